"""Frame sources and the capture thread, on real video files written with OpenCV."""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.records import Frame
from edge.settings import parse_config
from edge.sources import Capture, SourceUnavailable, make_source, redact_url
from edge.sources.base import BackoffConfig
from edge.sources.file import FileSource, FileSourceConfig
from edge.sources.picamera2 import PICAMERA2_MISSING, Picamera2Source, Picamera2SourceConfig
from edge.sources.rtsp import RtspSource, RtspSourceConfig
from edge.sources.v4l2 import V4l2Source, V4l2SourceConfig

N_FRAMES = 40
W, H = 160, 120
FAST = BackoffConfig(initial=0.01, max=0.04)
WAIT_S = 30.0  # upper bound for every wait below on a loaded 2-core CI machine; each normally takes milliseconds


def green_of(i: int) -> int:
    return 5 * i  # frame i is encoded in its green channel


def write_video(path: Path, frames: int = N_FRAMES, fps: float = 100.0) -> Path:
    """Frames of RGB (200, 5*i, 30): red-dominant, so a BGR/RGB mix-up shows, green counts frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened()
    for i in range(frames):
        rgb = np.empty((H, W, 3), np.uint8)
        rgb[...] = (200, green_of(i), 30)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.avi")


def file_config(path: Path, *, loop: bool = False, realtime: bool = False) -> FileSourceConfig:
    return FileSourceConfig(path=path, loop=loop, realtime=realtime, reopen_backoff_s=FAST)


def frame_number(pixels: np.ndarray) -> int:
    return round(float(pixels[..., 1].mean()) / 5)


def assert_rgb(pixels: np.ndarray) -> None:
    assert pixels.shape == (H, W, 3) and pixels.dtype == np.uint8 and pixels.flags.c_contiguous
    red, blue = float(pixels[..., 0].mean()), float(pixels[..., 2].mean())
    assert abs(red - 200) < 6 and abs(blue - 30) < 6, (red, blue)


# ----------------------------------------------------------------- FileSource


def test_file_source_reads_rgb_frames_then_ends(video: Path) -> None:
    with FileSource(file_config(video)) as source:
        numbers = []
        while (pixels := source.read()) is not None:
            assert_rgb(pixels)
            numbers.append(frame_number(pixels))
        assert source.fps == pytest.approx(100.0)
        assert source.read() is None
    assert numbers == list(range(N_FRAMES))


def test_file_source_loops(video: Path) -> None:
    with FileSource(file_config(video, loop=True)) as source:
        numbers = [frame_number(source.read()) for _ in range(2 * N_FRAMES + 5)]
    assert numbers == [*range(N_FRAMES), *range(N_FRAMES), *range(5)]


def test_file_source_paces_at_the_file_rate(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "fast.avi", frames=20, fps=200.0)
    with FileSource(file_config(clip, realtime=True)) as source:
        start = time.monotonic()
        count = 0
        while source.read() is not None:
            count += 1
        elapsed = time.monotonic() - start
    assert count == 20
    assert elapsed >= 19 / 200 * 0.95  # 19 periods after the first frame


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "clip.mp4"
    with pytest.raises(SourceUnavailable, match=re.escape(f"video file {missing} not found")):
        FileSource(file_config(missing)).open()


def test_undecodable_file_names_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"definitely not a video" * 100)
    with pytest.raises(SourceUnavailable, match=re.escape(f"video file {junk} could not be opened")):
        FileSource(file_config(junk)).open()


# ----------------------------------------------------------------- Capture


def test_capture_runs_a_file_to_its_end(video: Path) -> None:
    stop = threading.Event()
    taken: list[Frame] = []
    with Capture(FileSource(file_config(video)), stop) as capture:
        while (frame := capture.get(timeout=WAIT_S)) is not None:
            taken.append(frame)
        assert capture.ended.is_set()
        assert capture.error is None and not stop.is_set()
    assert not capture.running
    assert capture.frames == N_FRAMES
    assert len(taken) + capture.dropped == N_FRAMES
    assert taken[-1].index == N_FRAMES - 1
    indices = [f.index for f in taken]
    assert indices == sorted(set(indices))
    for frame in taken:
        assert_rgb(frame.pixels)
        assert frame_number(frame.pixels) == frame.index
    assert all(a.monotonic <= b.monotonic for a, b in zip(taken, taken[1:]))
    assert abs(taken[0].wall - time.time()) < 60


def test_slow_consumer_gets_newest_frame_and_drops_the_rest(video: Path) -> None:
    stop = threading.Event()
    with Capture(FileSource(file_config(video)), stop) as capture:
        first = capture.get(timeout=WAIT_S)
        assert first is not None
        # Stand in for slow inference: take nothing until the whole file has been read.
        assert capture.wait_until(lambda c: c.ended.is_set(), timeout=WAIT_S)
        last = capture.get(timeout=0)
        # On a loaded machine the reader may have finished the file before the first get: then
        # the first frame taken was already the newest, and nothing is left.
        taken = [f for f in (first, last) if f is not None]
        assert taken[-1].index == N_FRAMES - 1  # the newest, not the next
        assert capture.get(timeout=0) is None  # one slot: nothing else was kept
    assert capture.dropped == N_FRAMES - len(taken)
    assert capture.frames == N_FRAMES


def test_capture_loops_until_stopped(video: Path) -> None:
    stop = threading.Event()
    with Capture(FileSource(file_config(video, loop=True)), stop) as capture:
        assert capture.wait_until(lambda c: c.frames >= 3 * N_FRAMES, timeout=WAIT_S)
        assert not capture.ended.is_set()
        assert capture.fps > 0
        frame = capture.get(timeout=WAIT_S)
        assert frame is not None and frame_number(frame.pixels) == frame.index % N_FRAMES
    assert stop.is_set() and capture.ended.is_set() and not capture.running


def test_capture_with_missing_file_ends_with_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "gone.avi"
    stop = threading.Event()
    with Capture(FileSource(file_config(missing)), stop) as capture:
        assert capture.ended.wait(WAIT_S)
        assert capture.get(timeout=0) is None
    assert isinstance(capture.error, SourceUnavailable) and str(missing) in str(capture.error)
    assert capture.reopens == 0


def test_missing_camera_is_retried_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge.sources")
    config = V4l2SourceConfig(device="/dev/video99", reopen_backoff_s=FAST)
    with pytest.raises(SourceUnavailable, match="camera /dev/video99 not found"):
        V4l2Source(config).open()

    stop = threading.Event()
    with Capture(V4l2Source(config), stop) as capture:
        assert capture.wait_until(lambda c: c.reopens >= 4, timeout=WAIT_S)
        assert not capture.ended.is_set() and capture.frames == 0
    assert capture.ended.is_set() and not capture.running
    lines = [r.getMessage() for r in caplog.records if "reopening in" in r.getMessage()]
    assert len(lines) >= 4
    assert all(line.startswith("camera /dev/video99 not found (") for line in lines)
    delays = [float(re.search(r"reopening in ([0-9.]+) s", line).group(1)) for line in lines]
    assert delays[:4] == [0.01, 0.02, 0.04, 0.04]  # doubling, capped at max


def test_v4l2_index_maps_to_device_path() -> None:
    source = V4l2Source(V4l2SourceConfig(device=98))
    assert source.device_path == "/dev/video98"
    with pytest.raises(SourceUnavailable, match="camera /dev/video98 not found"):
        source.open()


@pytest.mark.skipif(importlib.util.find_spec("picamera2") is not None, reason="picamera2 is installed here")
def test_missing_picamera2_is_explained_and_not_retried() -> None:
    config = Picamera2SourceConfig(reopen_backoff_s=FAST)
    with pytest.raises(SourceUnavailable) as info:
        Picamera2Source(config).open()
    assert str(info.value).startswith(PICAMERA2_MISSING)
    assert "sudo apt install python3-picamera2" in str(info.value) and "--system-site-packages" in str(info.value)
    assert info.value.retryable is False

    stop = threading.Event()
    with Capture(Picamera2Source(config), stop) as capture:
        assert capture.ended.wait(WAIT_S)
    assert isinstance(capture.error, SourceUnavailable) and capture.reopens == 0


def test_unreachable_stream_fails_without_leaking_its_password() -> None:
    url = "rtsp://viewer:s3cret@127.0.0.1:9/stream1"  # port 9 (discard): nothing listens
    with pytest.raises(SourceUnavailable) as info:
        RtspSource(RtspSourceConfig(url=url)).open()
    assert "s3cret" not in str(info.value)
    assert "rtsp://viewer:***@127.0.0.1:9/stream1" in str(info.value)


def test_redact_url() -> None:
    assert redact_url("rtsp://u:p@cam:554/s?x=1") == "rtsp://u:***@cam:554/s?x=1"
    assert redact_url("rtsp://cam/s") == "rtsp://cam/s"


# ----------------------------------------------------------------- registry


def test_registry_covers_every_configured_source_type(video: Path) -> None:
    config = parse_config({"device_id": "t", "source": {"type": "file", "path": str(video), "realtime": False}})
    source = make_source(config.source)
    assert isinstance(source, FileSource)
    stop = threading.Event()
    with Capture(make_source(config.source), stop) as capture:
        assert capture.wait_until(lambda c: c.ended.is_set(), timeout=WAIT_S)
    assert capture.frames == N_FRAMES
    with pytest.raises(TypeError):
        FileSource(V4l2SourceConfig())  # type: ignore[arg-type]
