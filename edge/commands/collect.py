"""``edge collect``: the fleet collector, every device's windows from the broker into PostgreSQL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.commands.options import Subparsers, add_command
from edge.commands.service import fleet_start


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "collect", "fleet: store every device's windows from the broker in PostgreSQL")
    p.add_argument("--config", type=Path, required=True, help="collector YAML (see edge/fleet/collector.example.yaml)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The fleet collector: windows from the broker into PostgreSQL until SIGTERM/SIGINT."""
    import psycopg

    from edge.fleet.collector import Collector

    config, stop = fleet_start(
        args, "committing and acknowledging what has arrived, then stopping", "edge.fleet.collector"
    )
    try:
        Collector(config, stop).run()
    except psycopg.Error as exc:  # e.g. the role may not create tables: retrying will not help
        sys.stderr.write(f"edge collect: database {config.database.dbname}: {str(exc).strip()}\n")
        return 1
    return 0
