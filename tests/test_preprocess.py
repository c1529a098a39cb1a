"""Image preparation: the banded area shrink gives the bytes of a whole-image pass, and freed frame
buffers go back to the system between inputs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.preprocess import resize
from edge.synthetic import crowd_frame


def whole_image_area(image: np.ndarray, dsize: tuple[int, int]) -> np.ndarray:
    """The reference: ``INTER_AREA`` over the whole image in float64, rounded half up."""
    averaged = cv2.resize(image.astype(np.float64), dsize, interpolation=cv2.INTER_AREA)
    return np.floor(averaged + 0.5 + 1e-9).astype(np.uint8)


@settings(max_examples=150, deadline=None)
@given(
    h=st.integers(2, 900),
    w=st.integers(2, 900),
    fx=st.floats(0.02, 0.999),
    fy=st.floats(0.02, 0.999),
    channels=st.sampled_from([None, 1, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_banded_shrink_equals_the_whole_image_pass(h: int, w: int, fx: float, fy: float, channels, seed) -> None:
    shape = (h, w) if channels is None else (h, w, channels)
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    dsize = (max(1, min(w - 1, round(w * fx))), max(1, min(h - 1, round(h * fy))))
    got = resize(image, dsize)
    want = whole_image_area(image, dsize).reshape(got.shape)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("size", [(1920, 1280), (1280, 720), (640, 480)])
def test_letterbox_shrink_of_a_real_frame_is_unchanged(size: tuple[int, int]) -> None:
    """A full-size frame (faces, gradients, flat areas: many exact ties) to the detector's width."""
    frame, _ = crowd_frame(5, size[0], size[1], seed=3)
    dsize = (512, round(size[1] * 512 / size[0]))
    assert np.array_equal(resize(frame, dsize), whole_image_area(frame, dsize))


def test_freed_frame_buffers_return_to_the_system() -> None:
    """With ``FreeMemory.release`` between inputs (what ``edge analyze`` does), photos of changing
    sizes analysed one after another leave RSS where it was; without it glibc keeps tens of MB."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from edge.memory import FreeMemory, rss_mb
        memory = FreeMemory()
        base = rss_mb()["VmRSS"]
        kept = []
        for i in range(30):  # one photo's buffers (decoded frame, bands, network input)
            if sys.argv[1] == "released":
                memory.release()
            frame = np.ones((1280 + 16 * i, 1920, 3), np.uint8)
            band = np.ones((64, 1920, 3), np.float64)
            out = np.ones((300 + 8 * i, 512, 3), np.float64)
            kept.append(np.ones(1000, np.uint8))  # something long-lived allocated in between
            del frame
            pixels = np.ones((512, 512, 3), np.uint8)
            kept.append(np.ones(1000, np.uint8))
            del band, out, pixels
        if sys.argv[1] == "released":
            memory.release()
        print(rss_mb()["VmRSS"] - base)
        """
    )
    grown = {}
    for mode in ("released", "default"):
        done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        grown[mode] = float(done.stdout)
    assert grown["released"] < 3.0, grown
    assert grown["default"] > 6.0, grown  # the control: without it the same steps keep memory


@pytest.mark.parametrize(
    ("size", "dsize"),
    [
        ((1024, 768), (512, 384)),
        ((1030, 768), (512, 382)),
        ((1024, 770), (512, 385)),
        ((640, 480), (320, 239)),
        ((1920, 1440), (320, 240)),
        ((1800, 1200), (300, 199)),
    ],
)
def test_whole_ratios_on_one_or_both_axes_keep_the_bytes(size: tuple[int, int], dsize: tuple[int, int]) -> None:
    """OpenCV's shortcuts for whole ratios (2:1 and 6:1 both ways) and where only one ratio is whole."""
    frame, _ = crowd_frame(3, size[0], size[1], seed=1)
    assert np.array_equal(resize(frame, dsize), whole_image_area(frame, dsize))
