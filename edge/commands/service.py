"""Start-up the fleet's long-running commands (``collect``, ``dashboard``) share.

Both read the collector's YAML, log at its level unless -v, and stop cleanly on SIGTERM, SIGINT
or SIGHUP; doing it in one place keeps the two services' behaviour the same.
"""

from __future__ import annotations

import argparse
import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the fleet side needs psycopg, which a device does not install
    from edge.fleet.config import FleetConfig


def fleet_start(args: argparse.Namespace, action: str, component: str) -> tuple[FleetConfig, threading.Event]:
    """The fleet config and a stop event that SIGTERM/SIGINT/SIGHUP set (``action`` is logged under
    the ``component``'s logger)."""
    from edge.fleet.config import load_fleet_config
    from edge.signals import install_signal_handlers

    config = load_fleet_config(args.config)
    if not args.verbose:
        logging.getLogger().setLevel(config.log_level)
    stop = threading.Event()
    install_signal_handlers(stop, action, logging.getLogger(component))
    return config, stop
