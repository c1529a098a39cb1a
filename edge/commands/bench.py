"""``edge bench``: per-stage latency, frames per second and peak memory.

Measured, not asserted: the figures are printed (or emitted as JSON) for the
README and for comparing devices; nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge.analyzer import Analyzer
from edge.commands.options import Subparsers, add_analyzer_options, add_command, analyzer_config
from edge.media import IMAGE_SUFFIXES, MediaError, expand, frames
from edge.memory import peak_rss_mb
from edge.models import MISSING_HINT, Manifest
from edge.synthetic import crowd_frame

log = logging.getLogger("edge.bench")  # the name its warnings have always carried

STAGES = ("decode", "preprocess", "detect", "attributes_per_face", "end_to_end")


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "bench", "per-stage latency (p50/p90), frames per second and peak RSS")
    p.add_argument("paths", type=Path, nargs="*", metavar="PATH", help="photos or videos (synthetic frames always run)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--repeats", type=int, default=10, help="runs per frame (default: 10)")
    p.add_argument("--max-frames", type=int, default=30, help="frames read from each video (default: 30)")
    p.add_argument(
        "--pipeline",
        action="store_true",
        help="sustained daemon pipeline on synthetic video (detection plan, track, attributes, windows)",
    )
    p.add_argument("--faces", default="0,1,5,10", help="faces in view for --pipeline (default: 0,1,5,10)")
    p.add_argument(
        "--tile-interval",
        type=int,
        default=None,
        help="--pipeline: frames between searches of the same tile (default: the daemon's detector.tile_interval)",
    )
    p.add_argument(
        "--resolution", default="640x480", help="frame sizes for --pipeline, e.g. 640x480,1280x720 (default: 640x480)"
    )
    p.add_argument(
        "--no-people",
        action="store_true",
        help="--pipeline without the person detector, as people.enabled: false runs (default: the daemon's, on)",
    )
    p.add_argument(
        "--people-every",
        type=int,
        metavar="N",
        help="--pipeline: run the person detector on every N-th frame (default: the daemon's people.every_frames)",
    )
    p.add_argument("--duration", type=float, default=60.0, help="media seconds per --pipeline run (default: 60)")
    p.add_argument("--fps", type=float, default=15.0, help="media frame rate for --pipeline (default: 15)")
    p.add_argument(
        "--no-attention",
        action="store_true",
        help="--pipeline without head pose per face, as attention.enabled: false runs (default: the daemon's, on)",
    )
    add_analyzer_options(p, repeatable=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Photos and synthetic frames per stage, or (--pipeline) the daemon's sustained pipeline."""
    # One way to choose what runs: --variant and --detector-input, each repeatable. Photos compare
    # every combination by default; the pipeline measures what the daemon runs by default.
    default_variants, default_sizes = (["int8"], [512]) if args.pipeline else (["int8", "float"], [512, 320])
    if not args.variant and "float" in default_variants:
        # A wheel carries the int8 models only: by default, measure what is installed and say so.
        manifest = Manifest(args.model_dir)
        if not all(manifest.has(key, "float") for key in manifest.models):
            default_variants = ["int8"]
            log.warning("float32 models not installed: int8 only. %s", MISSING_HINT)
    configs = [(v, s) for v in args.variant or default_variants for s in args.detector_input or default_sizes]
    if args.pipeline:
        from edge.attention import AttentionConfig
        from edge.attributes import AttributesConfig
        from edge.commands.bench_pipeline import run_pipeline
        from edge.detector import DetectorConfig
        from edge.people_config import PeopleConfig
        from edge.tracker import Tracker, TrackingConfig

        # The daemon's defaults: weak detections reach the tracker, the detection plan covers
        # faces down to detector.min_face_px; --threshold/--min-face override them.
        detector = DetectorConfig()
        if args.threshold is None:
            args.threshold = min(detector.weak_threshold, detector.score_threshold)
        if args.min_face is None:
            args.min_face = detector.min_face_px
        if args.tile_interval is None:
            args.tile_interval = detector.tile_interval
        attributes = AttributesConfig()
        attention = AttentionConfig(enabled=not args.no_attention)
        people = replace(PeopleConfig(), enabled=not args.no_people)
        if args.people_every is not None:
            people = replace(people, every_frames=args.people_every)
        return run_pipeline(
            lambda v, s: Analyzer(
                replace(
                    analyzer_config(args, variant=v, size=s),
                    gender_gate=attributes.min_gender_score,
                    align=True,
                    pose=attention.enabled,
                    people=people.enabled,
                )
            ),
            lambda: Tracker(TrackingConfig(), detector, attributes, attention),
            people,
            configs,
            resolutions(args.resolution),
            [int(n) for n in args.faces.split(",")],
            args.duration,
            args.fps,
            args.json,
        )
    if not args.json:
        sys.stdout.write(header())
    return run_photos(
        lambda v, s: Analyzer(analyzer_config(args, variant=v, size=s)),
        configs,
        args.paths,
        args.repeats,
        args.max_frames,
        args.json,
    )


def resolutions(text: str) -> list[tuple[int, int]]:
    """Frame sizes from ``640x480,1280x720``."""
    try:
        sizes = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(len(s) != 2 or min(s) < 32 for s in sizes):
        raise ValueError(f"--resolution: expected sizes like 640x480,1280x720, got {text!r}")
    return [(s[0], s[1]) for s in sizes]


@dataclass(frozen=True)
class Input:
    name: str
    load: Callable[[], list[tuple[np.ndarray, float]]]  # frames with their decode time (ms)


def _file_input(path: Path, max_frames: int) -> Input:
    def load() -> list[tuple[np.ndarray, float]]:
        out = []
        if path.suffix.lower() in IMAGE_SUFFIXES:
            data = np.fromfile(str(path), dtype=np.uint8)
            t0 = time.perf_counter()
            bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
            if bgr is None:
                raise MediaError(f"{path}: not a readable image")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            out.append((rgb, (time.perf_counter() - t0) * 1000))
            return out
        t0 = time.perf_counter()
        for frame in frames(path):
            out.append((frame.rgb, (time.perf_counter() - t0) * 1000))
            if len(out) >= max_frames:
                break
            t0 = time.perf_counter()
        return out

    return Input(path.name, load)


def _synthetic(n_faces: int, face_px: float) -> Input:
    def load() -> list[tuple[np.ndarray, float]]:
        frame, _ = crowd_frame(n_faces, 640, 480, face_px, seed=n_faces)
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        t0 = time.perf_counter()
        bgr = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
        assert bgr is not None  # we encoded it a line above
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return [(rgb, (time.perf_counter() - t0) * 1000)]

    return Input(f"640x480, {n_faces} faces", load)


# The text table fits 100 columns: each stage's median, and the 90th percentile of the total
# (every stage's p50 and p90 are in --json).
_COLUMNS = ("decode", "prep", "detect", "per face", "total", "p90")
_INPUT_WIDTH = 19


def _ms(stages: dict, key: str, q: str = "p50") -> str:
    return f"{'-':>9}" if key not in stages else f"{stages[key][q]:9.1f}"


def _row(variant: str, size: int, r: dict) -> str:
    name = r["input"] if len(r["input"]) <= _INPUT_WIDTH else r["input"][: _INPUT_WIDTH - 1] + "~"
    stages = r["stages_ms"]
    cells = "".join(_ms(stages, k) for k in STAGES) + _ms(stages, "end_to_end", "p90")
    return (
        f"{variant:<4} {size:>3} {name:<{_INPUT_WIDTH}} {r['faces']:>5}{cells} {r['fps']:6.1f}{r['peak_rss_mb']:5.0f}"
    )


def measure(analyzer: Analyzer, inp: Input, repeats: int) -> dict:
    loaded = inp.load()
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    faces_seen = 0
    for rgb, decode_ms in loaded:
        for _ in range(repeats):
            t0 = time.perf_counter()
            lb = analyzer.detector.prepare(rgb)
            t1 = time.perf_counter()
            dets = analyzer.detector.infer(lb, (rgb.shape[1], rgb.shape[0]))
            t2 = time.perf_counter()
            analyzer.attributes.estimate(rgb, dets)
            t3 = time.perf_counter()
            samples["decode"].append(decode_ms)
            samples["preprocess"].append((t1 - t0) * 1000)
            samples["detect"].append((t2 - t1) * 1000)
            if dets:
                samples["attributes_per_face"].append((t3 - t2) * 1000 / len(dets))
            samples["end_to_end"].append(decode_ms + (t3 - t0) * 1000)
            faces_seen = len(dets)
    stats = {}
    for stage, values in samples.items():
        if values:
            stats[stage] = {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90))}
    e2e = stats["end_to_end"]["p50"]
    return {
        "input": inp.name,
        "frames": len(loaded),
        "faces": faces_seen,
        "stages_ms": stats,
        "fps": 1000.0 / e2e if e2e > 0 else None,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_photos(
    make_analyzer: Callable[[str, int], Analyzer],
    configs: list[tuple[str, int]],
    paths: list[Path],
    repeats: int,
    max_frames: int,
    as_json: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    inputs = []
    for item in expand(paths):
        if isinstance(item, MediaError):
            err.write(f"edge bench: {item}\n")
            continue
        inputs.append(_file_input(item, max_frames))
    inputs += [_synthetic(0, 60), _synthetic(1, 90), _synthetic(5, 60), _synthetic(10, 45)]
    results = []
    for variant, size in configs:
        analyzer = make_analyzer(variant, size)
        for inp in inputs:
            try:
                r = measure(analyzer, inp, repeats)
            except MediaError as exc:
                err.write(f"edge bench: {exc}\n")
                continue
            r.update(
                variant=variant,
                detector_input=size,
                threads=analyzer.detector.model.threads,
                backend=analyzer.detector.model.backend.name,
            )
            results.append(r)
            if not as_json:
                out.write(_row(variant, size, r) + "\n")
                out.flush()
    if as_json:
        out.write(json.dumps({"results": results, "peak_rss_mb": peak_rss_mb()}) + "\n")
    return 0


def header() -> str:
    cells = "".join(f"{c:>9}" for c in _COLUMNS)
    return (
        f"{'var':<4} {'in':>3} {'input':<{_INPUT_WIDTH}} {'faces':>5}{cells} {'fps':>6}{'RSS':>5}\n"
        f"{'':<4} {'':>3} {'':<{_INPUT_WIDTH}} {'':>5}{'ms: median per stage, p90 of the total':>54} {'MB':>11}\n"
    )
