"""Command-line pieces several subcommands share: the -v option and the analyzer's options.

``analyze``, ``eval`` and ``bench`` build the same analyzer from the same options; they are
declared once here so their help and defaults cannot drift apart.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeAlias

from edge.analyzer import AnalyzerConfig
from edge.attributes import ETHNICITY_WARNING, AttributesConfig
from edge.models import DEFAULT_DIR
from edge.preprocess import DEFAULT_VIEWS, VIEW_COUNTS

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

VERBOSE_HELP = "debug logging, including the interpreter's own start-up messages"

# Every subcommand takes -v too, so that `edge -v CMD` and `edge CMD -v` both work.
VERBOSE = argparse.ArgumentParser(add_help=False)
VERBOSE.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)


def add_command(subparsers: Subparsers, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand's parser, with the shared -v option."""
    return subparsers.add_parser(parents=[VERBOSE], name=name, help=help)


def add_analyzer_options(p: argparse.ArgumentParser, repeatable: bool = False) -> None:
    """Model and detector options; with ``repeatable`` (bench) --variant/--detector-input may repeat."""
    p.add_argument("--model-dir", type=Path, default=DEFAULT_DIR, help="models folder (default: %(default)s)")
    if repeatable:
        p.add_argument(
            "--variant",
            choices=["int8", "float"],
            action="append",
            help="model variant; repeat to compare (default: int8 and float; int8 with --pipeline)",
        )
        p.add_argument(
            "--detector-input",
            type=int,
            choices=[512, 320],
            action="append",
            help="detector input size; repeat to compare (default: 512 and 320; 512 with --pipeline)",
        )
    else:
        p.add_argument("--variant", choices=["int8", "float"], default="int8", help="model variant (default: int8)")
        p.add_argument(
            "--detector-input",
            type=int,
            choices=[512, 320],
            default=512,
            help="detector input size; 320 is faster and misses more small faces (default: 512)",
        )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="detector score threshold (default: 0.5; bench --pipeline: the daemon's weak_threshold)",
    )
    p.add_argument(
        "--min-face",
        type=int,
        default=None,
        help="smallest face in pixels; above 0, enlarged tiles find faces down to it "
        "(default: 0, one full-frame pass; bench --pipeline: the daemon's detector.min_face_px)",
    )
    p.add_argument("--threads", type=int, default=None, help="interpreter threads (default: all cores)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "litert", "tflite_runtime", "tensorflow"],
        help="TFLite interpreter (default: the first installed of LiteRT, tflite-runtime, TensorFlow)",
    )
    p.add_argument("--no-age", action="store_true", help="do not estimate age")
    p.add_argument("--no-gender", action="store_true", help="do not estimate gender")
    p.add_argument("--no-expression", action="store_true", help="do not estimate facial expression")
    p.add_argument(
        "--views",
        type=int,
        choices=VIEW_COUNTS,
        default=DEFAULT_VIEWS,
        help=f"crops averaged per attribute estimate (default: {DEFAULT_VIEWS}, as attributes.views; 1 is fastest)",
    )
    p.add_argument(
        "--align",
        action="store_true",
        help="turn tilted faces upright before the attribute models, as the daemon does "
        "(one face mesh run per face, about 4 ms a face on the demo photos)",
    )
    p.add_argument(
        "--ethnicity",
        action="store_true",
        help=f"also estimate ethnicity (off by default). RESTRICTED: {ETHNICITY_WARNING}",
    )


def analyzer_config(args: argparse.Namespace, variant: str | None = None, size: int | None = None) -> AnalyzerConfig:
    """The analyzer the options describe (``variant`` and ``size`` override --variant/--detector-input)."""
    return AnalyzerConfig(
        model_dir=args.model_dir,
        variant=variant or args.variant,
        detector_input=size or args.detector_input,
        score_threshold=0.5 if args.threshold is None else args.threshold,
        min_face_px=0 if args.min_face is None else args.min_face,
        tile_interval=getattr(args, "tile_interval", None) or 1,
        attributes=AttributesConfig(
            age=not args.no_age, gender=not args.no_gender, expression=not args.no_expression, ethnicity=args.ethnicity
        ),
        attribute_views=args.views,
        align=args.align,
        backend=args.backend,
        threads=args.threads,
    )
