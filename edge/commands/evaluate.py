"""``edge eval``: accuracy of the full pipeline on labelled faces, or its visitor counts on labelled clips.

``--utkface DIR``: every image goes through detector then attributes, as on the device. UTKFace
crops are tight (the face fills the image), which SSD detectors trained on WIDER FACE mostly miss,
so by default each crop is centred on a mid-grey canvas (``--canvas 600``); ``--canvas 0`` measures
the raw crops. Per-group figures carry their group size and a 95% confidence interval; with the
float32 models installed, int8 is also compared with float face by face.

``--face-px 16,24,...`` measures how accuracy falls with face size (``edge.evaluation.face_size``).
It is int8 only unless ``--with-float``; ``--limit N`` takes a seeded sample stratified by age band,
gender and race. Cost: one full analysis per image and size; measured 154 ms each (512 detector) on
a shared 2-core machine at load ~6, so 10 sizes x 2,000 images took 51 minutes there. The time is in
the output.

``--clips DIR``: what the daemon would count on real footage (``edge.evaluation.clips``).

The measurements live in ``edge.evaluation``; this module is the command line over them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge.analyzer import Analyzer
from edge.commands.options import Subparsers, add_analyzer_options, add_command, analyzer_config
from edge.models import MISSING_HINT, Manifest

log = logging.getLogger("edge.eval")  # the name its warnings have always carried


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers,
        "eval",
        "accuracy on labelled face images (--utkface) or visitor counts on labelled clips (--clips)",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--utkface",
        type=Path,
        metavar="DIR",
        help="face images with labels.csv (file, age, gender, race) or UTKFace file names AGE_GENDER_RACE_DATE.jpg",
    )
    what.add_argument(
        "--clips",
        type=Path,
        metavar="DIR",
        help="videos with labels.json ({clip: {visitors, female, male, faces_per_frame}}): the daemon's counts",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="with --clips: score this config's detector, tracking and attribute settings (default: the defaults)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument(
        "--canvas",
        type=int,
        default=600,
        help="centre each crop on a mid-grey canvas this big (0: raw crops; default: 600)",
    )
    p.add_argument("--int8-only", action="store_true", help="skip the float side-by-side run")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="only the first N images (with --face-px: a seeded sample of N stratified by age band, gender, race)",
    )
    p.add_argument(
        "--face-px",
        metavar="S,S,...",
        default=None,
        help="accuracy against face size: each crop downscaled so the CROP is S px wide (UTKFace crops are tight, "
        "so the detected box is about the crop; the table gives the median box side too), placed on a 640x480 "
        "frame and run through detector and attributes; one row per S (4-400), e.g. 16,20,24,32,40,48,64,80,96,128. "
        "Ignores --canvas; int8 only unless --with-float. Costs one analysis per image and size (about 150 ms "
        "each on a busy 2-core machine: use --limit)",
    )
    p.add_argument("--with-float", action="store_true", help="with --face-px: also run the float32 models")
    p.add_argument(
        "--frame",
        default="640x480",
        help="with --face-px: the frame size faces are placed in (default: 640x480); with --min-face the "
        "detection plan for that size runs",
    )
    add_analyzer_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The accuracy tables (or --face-px's, or --clips' counts) as Markdown, or one JSON object."""
    if args.face_px is not None and args.clips is not None:
        raise ValueError("--face-px goes with --utkface, not --clips")
    if args.with_float and args.int8_only:
        raise ValueError("--with-float and --int8-only contradict each other")
    if args.clips is not None:
        return _run_clips(args)
    from edge.evaluation import report
    from edge.evaluation.accuracy import evaluate_accuracy
    from edge.evaluation.face_size import evaluate_face_sizes, parse_face_px
    from edge.evaluation.placement import parse_frame

    sizes = parse_face_px(args.face_px) if args.face_px is not None else []
    variants = [args.variant]
    # The face-size sweep is int8 only unless --with-float: it is ten runs of the set already.
    if args.variant == "int8" and not args.int8_only and (args.face_px is None or args.with_float):
        manifest = Manifest(args.model_dir)
        if all(manifest.has(key, "float") for key in manifest.models):
            variants.append("float")
        else:
            log.warning("float32 models not installed: int8 only. %s", MISSING_HINT)

    def make_analyzer(variant: str) -> Analyzer:
        return Analyzer(analyzer_config(args, variant=variant))

    if args.face_px is not None:
        frame = parse_frame(args.frame)
        sweep = evaluate_face_sizes(make_analyzer, variants, args.utkface, sizes, args.limit, sys.stderr, frame)
        sys.stdout.write(json.dumps(sweep.to_dict()) + "\n" if args.json else report.face_size_report(sweep))
        return 0
    accuracy = evaluate_accuracy(
        make_analyzer, variants, args.utkface, args.canvas, args.ethnicity, args.limit, sys.stderr
    )
    sys.stdout.write(json.dumps(accuracy.to_dict()) + "\n" if args.json else report.accuracy_report(accuracy))
    return 0


def _run_clips(args: argparse.Namespace) -> int:
    """Score the daemon's counting (its defaults, or --config's settings) on labelled clips."""
    from dataclasses import replace

    from edge.daemon import analyzer_config as daemon_analyzer_config
    from edge.evaluation import clips
    from edge.settings import load_config, parse_config

    if args.config is not None:
        config = load_config(args.config)
    else:
        config = parse_config(
            {"device_id": "eval", "source": {"type": "file", "path": "-"}, "sink": {"type": "jsonl", "path": "-"}},
            "edge eval defaults",
        )
    base = daemon_analyzer_config(config)
    chosen = replace(base, model_dir=args.model_dir, variant=args.variant, backend=args.backend, threads=args.threads)
    from edge.tracker import Tracker

    def make_tracker() -> Tracker:
        return Tracker(config.tracking, config.detector, config.attributes, config.attention)

    from edge.people import PeopleTracker
    from edge.people_config import LineConfig

    def make_people(line: LineConfig | None) -> PeopleTracker:
        return PeopleTracker(replace(config.people, line=line or config.people.line))

    people = make_people if config.people.enabled else None
    return clips.run(lambda: Analyzer(chosen), make_tracker, args.clips, args.json, make_people=people)
