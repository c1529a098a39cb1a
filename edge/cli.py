"""The ``edge`` command line: one subcommand per module of ``edge.commands``.

Each command module registers its own parser and handler (``add_parser``); this module puts them
together, sets up logging, and turns the errors an operator can act on into a message and an exit
status instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from edge import __version__
from edge.commands import analyze, bench, check, collect, dashboard, demo, evaluate, forget, init, models, run
from edge.commands.options import VERBOSE_HELP
from edge.interpreter import BackendUnavailable
from edge.models import ModelError

# In the order `edge --help` lists them.
COMMANDS = (models, init, run, demo, collect, dashboard, check, forget, analyze, evaluate, bench)
# Long-running services log at INFO (or their config's level); the other commands only warn.
SERVICES = ("run", "collect", "dashboard")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge", description="Edge-device face analytics runtime")
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO if args.command in SERVICES else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    try:
        return int(args.func(args))
    except Exception as exc:
        reported = _operator_error(exc, args.command)
        if reported is None:
            raise
        status, message = reported
        sys.stderr.write(message + "\n")
        return status


def _operator_error(exc: Exception, command: str) -> tuple[int, str] | None:
    """Exit status and message for an error an operator can act on; None for a bug (re-raised
    with its traceback).

    The error types are imported here, not at the top: ``analyze`` must not pay for the config,
    sink (paho-mqtt) and source modules it never uses (docs/performance.md, "Memory").
    """
    from edge.config import ConfigError
    from edge.sinks import SinkError
    from edge.sources import SourceError
    from edge.state_lock import StateDirBusy
    from edge.state_store import StorageError

    if isinstance(exc, ConfigError):  # its message names the file and line already
        return 2, str(exc)
    if isinstance(exc, (ModelError, BackendUnavailable, SourceError, SinkError, StateDirBusy, ValueError)):
        return 2, f"edge {command}: {exc}"
    if isinstance(exc, StorageError):  # may clear by itself (a full disk): 1, so the service manager retries
        return 1, f"edge {command}: {exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
