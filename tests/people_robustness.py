"""How well people counting holds beyond the five development clips as they are (issue #28).

Runs the daemon's counting core (``FramePipeline`` with the face tracker and the people tracker, as
the daemon's defaults or ``--every``/``--min-s`` set them) over variants of the real clips
(``clip_variants``): people at 0.5x to 2x their size, mirrored, reversed in time, at half the frame
rate, two clips side by side and one after the other. Prints, per variant, people counted against
the people there (``labels.json``), visitors, and whether every visitor was also a person once
(people >= visitors). A measurement, not a test: it prints figures (README "People").

    .venv/bin/python tests/people_robustness.py [--every N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clip_variants import (  # noqa: E402
    CLIPS,
    clip_fps,
    clip_frames,
    half_rate,
    mirrored,
    one_after_another,
    reversed_in_time,
    scaled,
    side_by_side,
)

from edge.analyzer import Analyzer  # noqa: E402
from edge.daemon import analyzer_config  # noqa: E402
from edge.people import PeopleTracker  # noqa: E402
from edge.people_cells import PeopleTally, count_people  # noqa: E402
from edge.pipeline import FramePipeline  # noqa: E402
from edge.settings import parse_config  # noqa: E402
from edge.tracker import Tracker  # noqa: E402

# Where an enlarged window sits: over the clip's people (the corridor's are at its left edge).
ANCHOR = {"people-detection": (0.0, 0.0)}


def count(analyzer: Analyzer, config, frames: list[np.ndarray], fps: float) -> tuple[int, int, int]:
    """People, of them with a face, and visitors, as a window would count them (no minimum cell)."""
    tracker = Tracker(config.tracking, config.detector, config.attributes, config.attention)
    pipeline = FramePipeline(analyzer, tracker, PeopleTracker(config.people))
    tally, visitors = PeopleTally(), 0
    for i, rgb in enumerate(frames):
        result = pipeline.process(rgb, i / fps)
        visitors += len(result.update.new_visitors)
        count_people(tally, result.update, result.people)
    flushed = pipeline.flush(len(frames) / fps)
    count_people(tally, flushed.update, flushed.people)
    return len(tally.dwell), tally.with_face, visitors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, help="people.every_frames (default: the daemon's)")
    parser.add_argument("--min-s", type=float, help="people.min_s (default: the daemon's)")
    parser.add_argument("--min-hits", type=int, help="people.min_hits (default: the daemon's)")
    parser.add_argument("--only", help="variants whose name contains this (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = parse_config({"device_id": "m", "source": {"type": "file", "path": "-"}}, "people_robustness")
    people = config.people
    if args.every is not None:
        people = replace(people, every_frames=args.every)
    if args.min_s is not None:
        people = replace(people, min_s=args.min_s)
    if args.min_hits is not None:
        people = replace(people, min_hits=args.min_hits)
    config = replace(config, people=people)
    analyzer = Analyzer(analyzer_config(config))
    labels = json.loads((CLIPS / "labels.json").read_text())
    clips = {name: clip_frames(name) for name in sorted(labels)}
    fps = {name: clip_fps(name) for name in clips}
    variants = {
        "as is": lambda f, name: f,
        "0.5x": lambda f, name: scaled(0.5)(f),
        "0.75x": lambda f, name: scaled(0.75)(f),
        "1.5x": lambda f, name: scaled(1.5, ANCHOR.get(name, (0.5, 0.5)))(f),
        "2x": lambda f, name: scaled(2.0, ANCHOR.get(name, (0.5, 0.5)))(f),
        "mirrored": lambda f, name: mirrored(f),
        "reversed": lambda f, name: reversed_in_time(f),
        "half rate": lambda f, name: half_rate(f),
    }

    def wanted(variant: str) -> bool:
        return not args.only or args.only in variant

    rows = []

    def row(variant: str, clip: str, frames: list[np.ndarray], fps: float, truth: int) -> None:
        n, faced, visitors = count(analyzer, config, frames, fps)
        rows.append(
            {"variant": variant, "clip": clip, "people": n, "truth": truth, "with_face": faced, "visitors": visitors}
        )

    for variant, make in variants.items():
        for name, frames in clips.items() if wanted(variant) else ():
            rate = fps[name] / (2 if variant == "half rate" else 1)
            row(variant, name, make(frames, name), rate, labels[name]["people"])
    names = list(clips)
    pairs = [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]
    for a, b in pairs:
        truth = labels[a]["people"] + labels[b]["people"]
        if wanted("side by side"):
            row("side by side", f"{a} + {b}", side_by_side(clips[a], clips[b]), fps[a], truth)
        if wanted("one after another"):
            after = one_after_another(clips[a], clips[b], gap=round(2 * fps[a]))
            row("one after another", f"{a} + {b}", after, fps[a], truth)
    if args.json:
        print(json.dumps({"every_frames": people.every_frames, "rows": rows}))
        return 0
    print(f"people.every_frames {people.every_frames}, min_s {people.min_s}, min_hits {people.min_hits}")
    print(f"{'variant':<18} {'clip':<66} {'people':>8} {'w/ face':>7} {'visitors':>8}")
    for r in rows:
        print(
            f"{r['variant']:<18} {r['clip'][:66]:<66} {r['people']:>4}/{r['truth']:<3} {r['with_face']:>7} "
            f"{r['visitors']:>8}"
        )
    print()
    print(f"{'variant':<18} {'runs':>4} {'exact':>5} {'over':>5} {'under':>5} {'people':>9} {'>= visitors':>11}")
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        exact = sum(r["people"] == r["truth"] for r in mine)
        over = sum(max(0, r["people"] - r["truth"]) for r in mine)
        under = sum(max(0, r["truth"] - r["people"]) for r in mine)
        counted, truth = sum(r["people"] for r in mine), sum(r["truth"] for r in mine)
        covered = sum(r["people"] >= r["visitors"] for r in mine)
        print(
            f"{variant:<18} {len(mine):>4} {exact:>5} {over:>5} {under:>5} {counted:>4}/{truth:<4} "
            f"{covered:>5}/{len(mine):<5}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
