"""``edge dashboard``: the read-only fleet web page over the collector's database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.commands.options import Subparsers, add_command
from edge.commands.service import fleet_start


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "dashboard", "fleet: a read-only web page of the collected windows")
    p.add_argument("--config", type=Path, required=True, help="the collector's YAML (its database and dashboard)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard until SIGTERM/SIGINT; 2 when its address cannot be listened on."""
    from edge.fleet.dashboard import serve

    config, stop = fleet_start(args, "stopping the dashboard", "edge.fleet.dashboard")
    try:
        serve(config, stop)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        d = config.dashboard
        sys.stderr.write(f"edge dashboard: cannot listen on {d.bind}:{d.port}: {exc.strerror or exc}\n")
        return 2
    return 0
