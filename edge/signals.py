"""Stopping on a signal: one handler for the daemon, the demo, the collector and the dashboard."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType


def install_signal_handlers(stop: threading.Event, action: str, logger: logging.Logger) -> None:
    """SIGTERM, SIGINT and SIGHUP set ``stop``; ``logger`` (the component's own) says what happens next.

    SIGHUP (a closed terminal, ``systemctl kill -s HUP``) would otherwise end the process on the
    spot (the daemon would lose its open window); none of these programs has a configuration to reload.
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: %s", signal.Signals(signum).name, action)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, handler)
