"""``edge check``: validate a config file and look for what would stop ``edge run``, starting nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.commands.options import Subparsers, add_command


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "check", "validate a config file without starting anything")
    p.add_argument("--config", type=Path, required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate the file, then look (without side effects) for what would stop ``edge run``."""
    from edge.preflight import preflight
    from edge.settings import load_config

    config = load_config(args.config)
    findings = preflight(config)
    for finding in findings:
        sys.stderr.write(f"{finding.level}: {finding}\n")
    if any(f.level == "error" for f in findings):
        return 2
    sys.stdout.write(
        f"{args.config}: ok (device {config.device_id}, site {config.site}, "
        f"source {type(config.source).type}, sink {type(config.sink).type}, "
        f"windows of {config.aggregation.window_s} s, min cell {config.aggregation.min_cell}"
        f"{', ETHNICITY ON' if config.attributes.ethnicity else ''})\n"
    )
    return 0
