"""``edge bench --pipeline``: the daemon's sustained pipeline on synthetic video, per stage.

Detection plan, head pose, person detection (every ``people.every_frames``-th frame), tracking,
attributes on the best observations, aggregation: what a device runs, timed frame by frame.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from edge.analyzer import Analyzer
from edge.memory import peak_rss_mb
from edge.people_config import PeopleConfig
from edge.synthetic import crowd_frame
from edge.tracker import Tracker


def run_pipeline(
    make_analyzer: Callable[[str, int], Analyzer],
    make_tracker: Callable[[], Tracker],
    people: PeopleConfig,
    configs: list[tuple[str, int]],
    resolutions: list[tuple[int, int]],
    faces: list[int],
    duration_s: float,
    fps: float,
    as_json: bool,
    out: TextIO | None = None,
) -> int:
    """Sustained daemon pipeline (detection plan, track, attributes on best observations,
    aggregate) on synthetic video where the same people stay in view: per-frame cost must not
    grow with dwell, memory must stay flat. Frames are timed as fast as the machine goes; the
    media clock advances 1/fps per frame so tracks see realistic motion."""
    out = out or sys.stdout
    results = []
    for variant, size in configs:
        analyzer = make_analyzer(variant, size)
        for width, height in resolutions:
            plan = analyzer.detector.plan(width, height)
            if not as_json:
                per_frame = plan.passes_per_frame(analyzer.detector.tile_interval)
                out.write(
                    f"{variant} {size}: detection plan {plan.describe()}; {per_frame} of its {len(plan.passes)} "
                    f"passes run per frame (tile interval {analyzer.detector.tile_interval})\n"
                )
            for n in faces:
                measured = _pipeline_run(analyzer, make_tracker, people, n, width, height, duration_s, fps)
                r = dict(
                    variant=variant,
                    detector_input=size,
                    passes=len(plan.passes),
                    passes_per_frame=plan.passes_per_frame(analyzer.detector.tile_interval),
                    **measured,
                )
                results.append(r)
                if not as_json:
                    f, last = r["frame_ms_first_quarter"], r["frame_ms_last_quarter"]
                    out.write(
                        f"{variant:<5} {size:>3}  {width}x{height}  {n:>3} faces  {r['frames']:>6} frames  "
                        f"{r['fps']:6.1f} fps  first quarter p50/p90 {f['p50']:5.1f}/{f['p90']:5.1f} ms  "
                        f"last quarter {last['p50']:5.1f}/{last['p90']:5.1f} ms  "
                        f"peak RSS {r['rss_start_mb']:.0f} -> {r['rss_end_mb']:.0f} MB\n"
                        f"{'':<12}stage p50 ms: "
                        + "  ".join(f"{k} {v:.2f}" for k, v in r["stage_ms_p50"].items())
                        + f"  (head pose {r['pose_ms_per_face']:.2f} ms a face; person detector "
                        + (
                            f"{r['person_ms_per_run']:.2f} ms a run, every {people.every_frames} frames)\n"
                            if people.enabled
                            else "off)\n"
                        )
                    )
                    out.flush()
    if as_json:
        out.write(json.dumps({"pipeline": results}) + "\n")
    return 0


def _people(r: dict[str, Any], people: PeopleConfig) -> str:
    if not people.enabled:
        return "off"
    return f"{r['person_ms_per_run']:.2f} ms a run, every {people.every_frames} frames"


def _pipeline_run(
    analyzer: Analyzer,
    make_tracker: Callable[[], Tracker],
    people_config: PeopleConfig,
    n: int,
    width: int,
    height: int,
    duration_s: float,
    fps: float,
) -> dict[str, Any]:
    from edge.aggregator import AggregationConfig, Aggregator
    from edge.attributes import AttributesConfig
    from edge.people import PeopleTracker
    from edge.pipeline import FramePipeline

    base, _ = crowd_frame(n, width, height, 60.0 * height / 480, seed=n)
    tracker = make_tracker()
    agg = Aggregator(
        AggregationConfig(window_s=60), AttributesConfig(), tracker.attention, "bench", "bench", people_config
    )
    people = PeopleTracker(people_config) if people_config.enabled else None
    pipeline = FramePipeline(analyzer, tracker, people)
    frames = int(duration_s * fps)
    times: list[float] = []
    stages: dict[str, list[float]] = {"person": [], "detect": [], "pose": [], "track": [], "attributes": []}
    person_runs = 0
    posed = 0  # faces whose pose was read
    rss_start = peak_rss_mb()
    wall0 = time.time()
    t_start = time.perf_counter()
    for i in range(frames):
        # People sway a few pixels: they stay, so dwell grows with the run.
        frame = np.roll(base, (int(3 * np.sin(i / 7)), int(4 * np.cos(i / 9))), axis=(0, 1))
        t0 = time.perf_counter()
        result = pipeline.process(frame, i / fps)
        agg.observe(result.update, wall0 + i / fps, result.people)
        agg.tick(wall0 + i / fps)
        times.append((time.perf_counter() - t0) * 1000)
        per_stage = (result.person_ms, result.detect_ms, result.pose_ms, result.track_ms, result.attributes_ms)
        for stage, ms in zip(stages, per_stage):
            stages[stage].append(ms)
        person_runs += result.people is not None and result.people.zones is not None
        posed += len(result.detections) if analyzer.pose_mesh is not None else 0
    elapsed = time.perf_counter() - t_start
    q = max(1, len(times) // 4)
    return {
        "faces": n,
        "width": width,
        "height": height,
        "frames": frames,
        "media_s": duration_s,
        "fps": frames / elapsed,
        "frame_ms_first_quarter": {
            "p50": float(np.percentile(times[:q], 50)),
            "p90": float(np.percentile(times[:q], 90)),
        },
        "frame_ms_last_quarter": {
            "p50": float(np.percentile(times[-q:], 50)),
            "p90": float(np.percentile(times[-q:], 90)),
        },
        "stage_ms_p50": {stage: float(np.percentile(ms, 50)) for stage, ms in stages.items()},
        # Head pose per face read (the face mesh and the angles): 0 with attention off.
        "pose_ms_per_face": sum(stages["pose"]) / posed if posed else 0.0,
        # The person detector per run (it runs on every people.every_frames-th frame): 0 with people off.
        "person_ms_per_run": sum(stages["person"]) / person_runs if person_runs else 0.0,
        "rss_start_mb": rss_start,
        "rss_end_mb": peak_rss_mb(),
        "tracks_at_end": tracker.tracks,
    }
