"""How well the head pose tells *looking* from *not looking* (a measurement, not a test).

Scores the shipped face mesh's pose (``edge.head_pose``, int8 and float) against the hand-labelled
set of ``tests/head_pose_set.py`` (yaw and pitch judged by eye, blind to any estimate). A face is
*looking* when labelled frontal and level, *not looking* when labelled half-turned, in profile or
steeply tilted; a face labelled slight (15-30 deg) or tilted (15-30 deg) lies on the cone's edge
(+-22.5 deg) and is reported apart. Prints markdown tables with n per cell.

    .venv/bin/python tests/head_pose_eval.py
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_pose_set import items  # noqa: E402

from edge.analyzer import Analyzer, AnalyzerConfig  # noqa: E402
from edge.attention import AttentionConfig, looking  # noqa: E402
from edge.records import Detection, HeadPose  # noqa: E402

YAW_BINS = ("frontal", "slight", "half", "profile")
PITCH_BINS = ("level", "tilted", "steep")
ESTIMATE_EDGES = (0.0, 15.0, 30.0, 60.0, 180.0)  # |yaw| bands matching the labels' bins


def truth(label: dict) -> str:
    """looking / not / edge, from the labelled bins."""
    if label["yaw"] in ("half", "profile") or label["pitch"] == "steep":
        return "not looking"
    if label["yaw"] == "frontal" and label["pitch"] == "level":
        return "looking"
    return "edge of the cone"


def band(value: float) -> str:
    for lo, hi, name in zip(ESTIMATE_EDGES, ESTIMATE_EDGES[1:], YAW_BINS):
        if lo <= abs(value) < hi:
            return name
    return YAW_BINS[-1]


def side_agrees(label: dict, pose: HeadPose) -> bool | None:
    """Whether the estimated yaw points to the labelled side (None: frontal or no side)."""
    side = label.get("yaw_side")
    if label["yaw"] == "frontal" or side not in ("left", "right"):
        return None
    return (pose.yaw > 0) == (side == "right")


def measure(variant: str) -> list[tuple[dict, HeadPose | None]]:
    analyzer = Analyzer(replace(AnalyzerConfig(variant=variant), pose=True, face_check=False))
    out = []
    for label, rgb, box in items():
        (posed,), _ = analyzer.read_poses(rgb, [Detection(box, 1.0)])
        out.append((label, posed.pose))
    return out


def report(variant: str, rows: list[tuple[dict, HeadPose | None]], cone: AttentionConfig) -> None:
    print(f"\n### {variant}: n = {len(rows)} labelled faces\n")
    print("| labelled yaw | n | " + " | ".join(f"estimated {b}" for b in YAW_BINS) + " | no pose | side right |")
    print("|---|---|" + "---|" * (len(YAW_BINS) + 2))
    for name in YAW_BINS:
        group = [(lab, p) for lab, p in rows if lab["yaw"] == name]
        counts = Counter(band(p.yaw) for _, p in group if p is not None)
        sides = [s for s in (side_agrees(lab, p) for lab, p in group if p is not None) if s is not None]
        side = f"{sum(sides)}/{len(sides)}" if sides else "-"
        cells = " | ".join(str(counts.get(b, 0)) for b in YAW_BINS)
        print(f"| {name} | {len(group)} | {cells} | {sum(p is None for _, p in group)} | {side} |")
    print("\n| labelled pitch | n | estimated |pitch| median | p90 |")
    print("|---|---|---|---|")
    for name in PITCH_BINS:
        values = [abs(p.pitch) for lab, p in rows if lab["pitch"] == name and p is not None]
        if values:
            print(f"| {name} | {len(values)} | {np.median(values):.1f} | {np.percentile(values, 90):.1f} |")
    print("\n| labelled | n | estimated looking | estimated not looking |")
    print("|---|---|---|---|")
    for name in ("looking", "not looking", "edge of the cone"):
        group = [p for lab, p in rows if truth(lab) == name]
        yes = sum(looking(p, cone) for p in group)
        print(f"| {name} | {len(group)} | {yes} | {len(group) - yes} |")
    clear = [(truth(lab), looking(p, cone)) for lab, p in rows if truth(lab) != "edge of the cone"]
    right = sum((t == "looking") == e for t, e in clear)
    print(f"\nclear cases right: {right}/{len(clear)} ({100 * right / len(clear):.1f}%)")


def parity(int8: list[tuple[dict, HeadPose | None]], flt: list[tuple[dict, HeadPose | None]]) -> None:
    pairs = [(a, b) for (_, a), (_, b) in zip(int8, flt) if a is not None and b is not None]
    dyaw = np.array([abs(a.yaw - b.yaw) for a, b in pairs])
    dpitch = np.array([abs(a.pitch - b.pitch) for a, b in pairs])
    agree = sum(looking(a, AttentionConfig()) == looking(b, AttentionConfig()) for a, b in pairs)
    print(f"\n### int8 against float: n = {len(pairs)}\n")
    for name, d in (("yaw", dyaw), ("pitch", dpitch)):
        print(f"{name} difference: median {np.median(d):.1f}, p95 {np.percentile(d, 95):.1f}, max {d.max():.1f}")
    print(f"looking decided alike: {agree}/{len(pairs)}")


def main() -> None:
    cone = AttentionConfig()
    results = {variant: measure(variant) for variant in ("int8", "float")}
    for variant, rows in results.items():
        report(variant, rows, cone)
    parity(results["int8"], results["float"])


if __name__ == "__main__":
    main()
