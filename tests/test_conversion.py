"""Reproducibility: re-running the whole conversion gives the committed proof figures.

Runs the real pipeline end to end (npm pack, TensorFlow rebuild, equalisation, calibration,
TFLite conversion, verification, the per-group check): 843 s on a quiet 2-core AMD EPYC (Zen 4,
2026-12-04), of which GEAR's proof takes 650 s; 1,009 s the same day before the proof ran a face's
other views only where the device does. Plus the npm download on a first run.

What it promises: every proof bar comes out as committed (and the converter exits 0 exactly
when all committed bars hold); every figure lies within the tolerances below of the committed
one; with the committed TensorFlow version the float32 files are byte-identical.

Measured spread (TensorFlow 2.21.0, 2-core AMD EPYC). Before the equalisation statistics were
computed in float64, 9 runs (as is x2, loaded, 1 thread, 1 core, oneDNN graph rewrites off,
oneDNN capped at AVX and at SSE4.1 to stand in for other CPUs, 16 threads) gave 5 different
sets of int8 files: those statistics came from float32 TensorFlow convolutions, whose last
bits depend on the thread count and on the kernel oneDNN picks for the CPU (AVX2 here,
AVX-512 on many Xeons); the committed files of the time, made on another machine, were a 6th.
Machine load changed nothing. The float32 files and every figure that does not depend on the
four equalised int8 models (float_*, reference faces, demo face counts, the GEAR/ethnicity
model) never moved. The largest deviations of those 6 sets from the committed figures:
agreement/recall/precision rates 0.016 (expression stress set, 6 of 384 crops; the rest
<= 0.008), recall drop 0.46 points (1 of 219 faces), mean |age change| 0.041 year, max |age
change| 1.12 years (one crop of 384 sets a max: judge by the mean), mean IoU 0.0005; and the
expression bar (>= 0.95) failed in 2 of them (0.945, 0.948). With float64 statistics
(convert/faceapi_nets.py) 8 runs under those conditions gave byte-identical files and
identical figures (only the diagnostic tf_vs_* figures, plain float32 TensorFlow, moved). No
Intel machine was at hand to confirm bit-identity there, so the tolerances stay at about twice
the spread measured without the fix: what a CPU that still differed in a last bit would see.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
if shutil.which("npm") is None:
    pytest.skip("npm is needed to fetch the pinned sources", allow_module_level=True)

REPO = Path(__file__).resolve().parent.parent
COMMITTED = json.loads((REPO / "models" / "manifest.json").read_text())
# Figures computed from float models or the un-equalised GEAR model: no spread measured;
# 0.01 leaves room for two reference faces of 219 to move on another CPU.
STABLE_TOL = 0.01
# int8 agreement/recall/precision rates: measured spread 0.016 (see above).
INT8_RATE_TOL = 0.03
POINTS_TOL = 1.5  # recall drop in points: measured 0.46
MEAN_YEARS_TOL = 0.1  # mean |age change|: measured 0.041 year
MAX_YEARS_TOL = 2.5  # max |age change|: measured 1.12 years; a sanity bound only
IOU_TOL = 0.005  # mean IoU of matched boxes: measured 0.0005
STABLE_METRICS = {"float_recall", "float_precision", "reference_faces", "verification_frames", "verification_crops"}
EQUALISED = {"detector", "detector_320", "age_gender", "expression"}


MAX_DEGREES_TOL = 3.0  # the largest roll change: one face of 700 sets it, a sanity bound only
DEGREES_TOL = 0.3  # the face mesh's roll change, mean and 95th percentile: a last bit moves a few faces
LANDMARK_TOL = 0.005  # its landmark error in eye distances


# The person detector (not equalised): no spread measured yet. Its int8 figures are rates over about
# 64 people in 24 held-out images, where one person is 0.016; the people counts may move by a few.
PERSON_COUNT_TOL = 3
PERSON_IOU_TOL = 0.02


def tolerance(key: str, metric: str) -> float:
    if key == "person":
        return (
            PERSON_COUNT_TOL
            if metric.endswith("_people")
            else PERSON_IOU_TOL
            if metric == "mean_iou"
            else INT8_RATE_TOL
        )
    if metric.startswith("roll_max"):
        return MAX_DEGREES_TOL
    if metric.endswith("_deg"):
        return DEGREES_TOL
    if metric.startswith("landmark_") and metric.endswith("_error"):
        return LANDMARK_TOL
    if metric in STABLE_METRICS or key not in EQUALISED:
        return STABLE_TOL
    if metric.endswith("max_abs_change_years"):
        return MAX_YEARS_TOL
    if metric.endswith("_years"):
        return MEAN_YEARS_TOL
    if metric.endswith("_points"):
        return POINTS_TOL
    if metric.startswith("mean_iou"):
        return IOU_TOL
    return INT8_RATE_TOL


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.conversion
def test_full_conversion_reproduces_committed_figures(tmp_path: Path) -> None:
    out = tmp_path / "models"
    proc = subprocess.run(
        [sys.executable, "-m", "edge_convert", "--out", str(out), "--cache-dir", str(REPO / ".cache" / "npm")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,  # 14 min on a quiet Zen 4; over 60 on a 2-core Zen 1 beside the emulated Pi check
    )
    all_hold = all(b["holds"] for e in COMMITTED["models"].values() for b in e["bars"])
    assert proc.returncode == (0 if all_hold else 1), proc.stderr[-3000:]
    assert "recall drop (points)" in proc.stdout  # the proof table is printed
    fresh = json.loads((out / "manifest.json").read_text())
    assert set(fresh["models"]) == set(COMMITTED["models"])
    for key, entry in COMMITTED["models"].items():
        new = fresh["models"][key]
        assert new["source"] == entry["source"]
        assert new["input"]["shape"] == entry["input"]["shape"]
        assert [b["holds"] for b in new["bars"]] == [b["holds"] for b in entry["bars"]], key
        if fresh["tensorflow"] == COMMITTED["tensorflow"]:
            assert sha256(out / entry["float"]["file"]) == entry["float"]["sha256"], key
        for metric, value in entry["proof"].items():
            if isinstance(value, dict):
                assert new["proof"][metric] == value, (key, metric)
            elif isinstance(value, (list, str)):
                continue  # per-group rows and the weakest group's name: held by the weakest figure
            elif metric.startswith("tf_vs"):
                assert new["proof"][metric] < 1e-3, (key, metric)
            else:
                tol = tolerance(key, metric)
                assert new["proof"][metric] == pytest.approx(value, abs=tol), (key, metric, tol)
