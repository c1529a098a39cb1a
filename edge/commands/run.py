"""``edge run``: the daemon, camera frames to privacy-safe visitor counts per window."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

from edge.commands.options import Subparsers, add_command


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "run", "the daemon: camera frames to privacy-safe visitor counts per window")
    p.add_argument("--config", type=Path, required=True, help="YAML config (see edge/config.example.yaml)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Refuse to start on what ``edge check`` calls an error, else run the daemon until a signal."""
    from edge.daemon import Daemon
    from edge.preflight import preflight, refuses_start
    from edge.settings import load_config
    from edge.signals import install_signal_handlers

    config = load_config(args.config)
    if not args.verbose:
        logging.getLogger().setLevel(config.log_level)
    # edge check's checks, before anything is opened or published: what would stop the run stops it
    # here, with the same words; a missing camera or stream is waited for (the daemon retries it).
    findings = preflight(config)
    blocking = [f for f in findings if refuses_start(config, f)]
    for finding in findings:
        if finding in blocking:
            sys.stderr.write(f"error: {finding}\n")
        else:
            logging.getLogger("edge.preflight").warning("pre-start check: %s: %s", finding.level, finding)
    if blocking:
        return 2
    stop = threading.Event()
    install_signal_handlers(stop, "closing the open window", logging.getLogger("edge.daemon"))
    return Daemon(config, stop).run()
