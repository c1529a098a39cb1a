"""The install a user does: build the wheel, put it in a fresh venv, run `edge` from elsewhere.

An editable install or a run from the checkout would find ``models/`` beside the code and
hide a wheel without models; this test uses neither. About a minute (pip resolves the
runtime dependencies from its cache or the package index).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PYPI_LIMIT_MB = 100  # the package index's default upload limit per file


def _run(cmd: list[str], cwd: Path, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**env, **extra_env})


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)], cwd=out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("edge_face_analytics-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel (and its declared dependencies) installed."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    proc = _run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=env_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env_dir


def test_wheel_carries_the_int8_models_and_no_generic_top_level_names(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    manifest = json.loads(zipfile.ZipFile(wheel).read("edge/model_files/manifest.json"))
    for key, entry in manifest["models"].items():
        assert f"edge/model_files/{entry['file']}" in names, key
        if "anchors" in entry:
            assert f"edge/model_files/{entry['anchors']['file']}" in names, key
    assert not [n for n in names if n.endswith("_float32.tflite")], "float32 models stay in the checkout"
    # The fleet side works from an install too: its page, the vendored chart library, the example.
    for part in (
        "static/index.html",
        "static/dashboard.js",
        "static/vendor/chart.umd.min.js",
        "collector.example.yaml",
    ):
        assert f"edge/fleet/{part}" in names, part
    # Every module of the checkout is in the wheel: a new subpackage missing from pyproject's
    # package list (setuptools cannot discover edge_convert, which lives in convert/) fails here.
    modules = [
        f"edge/{p.relative_to(REPO / 'edge')}" for p in (REPO / "edge").rglob("*.py") if "node_modules" not in p.parts
    ]
    modules += [f"edge_convert/{p.relative_to(REPO / 'convert')}" for p in (REPO / "convert").rglob("*.py")]
    assert sorted(m for m in modules if m not in names) == []
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"edge", "edge_convert"}, tops
    assert wheel.stat().st_size < PYPI_LIMIT_MB * 1e6


def test_installed_edge_analyzes_the_packaged_picture_from_another_directory(installed: Path, tmp_path: Path) -> None:
    python = str(installed / "bin" / "python")
    where = _run([python, "-c", "import edge, sys; sys.stdout.write(edge.__file__)"], cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout).is_relative_to(installed), "imported the checkout, not the install"
    sample = Path(where.stdout).parent / "data" / "astronaut.jpg"
    proc = _run([str(installed / "bin" / "edge"), "analyze", "--json", str(sample)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(record["faces"]) == 1
    assert "XNNPACK" not in proc.stderr  # the interpreter's banner only with --verbose
    models = _run([str(installed / "bin" / "edge"), "models"], cwd=tmp_path)
    assert models.returncode == 0, models.stderr
    assert "not installed" in models.stdout and "--model-dir" in models.stdout
    # The bench as the README writes it: a wheel has no float32 models, so it measures int8 and says so.
    bench = _run([str(installed / "bin" / "edge"), "bench", "--repeats", "1", str(sample)], cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr
    assert "float32 models not installed: int8 only" in bench.stderr and "int8" in bench.stdout
    # A float run says what to do instead of failing obscurely.
    flt = _run([str(installed / "bin" / "edge"), "analyze", "--variant", "float", str(sample)], cwd=tmp_path)
    assert flt.returncode == 2
    assert "--model-dir" in flt.stderr and "edge_convert" in flt.stderr


def test_installed_edge_checks_the_example_config(installed: Path, tmp_path: Path) -> None:
    edge = str(installed / "bin" / "edge")
    python = str(installed / "bin" / "python")
    path = _run([python, "-c", "import edge, sys; sys.stdout.write(edge.__file__)"], cwd=tmp_path).stdout
    example = Path(path).parent / "config.example.yaml"
    has_picamera2 = _run([python, "-c", "import picamera2"], cwd=tmp_path).returncode == 0
    proc = _run([edge, "check", "--config", str(example)], cwd=tmp_path)
    if has_picamera2:
        assert proc.returncode == 0, proc.stderr
    else:  # the example is for a Pi camera; here it cannot start, and check says why
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "source" in proc.stderr and "picamera2" in proc.stderr
    # The same config with a real video file instead of the camera is fine.
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    config = yaml.safe_load(example.read_text())
    config["source"] = {"type": "file", "path": str(video)}
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump(config))
    proc = _run([edge, "check", "--config", str(mine)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_a_newcomer_goes_from_init_to_counted_windows_with_the_installed_command(
    installed: Path, tmp_path: Path
) -> None:
    """The first hour, scripted: ``edge init`` for a video file and windows on stdout, ``edge check``,
    ``edge run``: each exits 0, and the run prints the clip's window."""
    edge = str(installed / "bin" / "edge")
    clip = REPO.parent / "shared" / "data" / "real-footage" / "head-pose-face-detection-male.avi"
    if not clip.exists():  # the development clips live beside the checkout; else a synthetic visitor
        from edge.scenes import Scene, Visitor, write_video

        clip = write_video(
            Scene(640, 480, 10.0, 4.0, (Visitor(0.5, 3.5, 0.5, 60.0, 1, False, (1.0, 1.0, 1.0)),)), tmp_path / "c.avi"
        )
    config = tmp_path / "edge.yaml"
    init = _run(
        [edge, "init", "--source", "file", "--path", str(clip), "--device-id", "first-1", "-o", str(config)],
        cwd=tmp_path,
    )
    assert init.returncode == 0, init.stderr
    check = _run([edge, "check", "--config", str(config)], cwd=tmp_path, STATE_DIRECTORY=str(tmp_path / "state"))
    assert check.returncode == 0 and "ok" in check.stdout, check.stderr
    # The default state folder, as systemd's StateDirectory= would give it (not this user's home).
    state = str(tmp_path / "state")
    run = _run([edge, "run", "--config", str(config)], cwd=tmp_path, timeout=300, STATE_DIRECTORY=state)
    assert run.returncode == 0, run.stderr
    (window,) = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert window["device"] == "first-1" and window["visitors"] in (None, 1)
    assert "ended; the daemon stops (source.loop: true replays it)" in run.stderr
