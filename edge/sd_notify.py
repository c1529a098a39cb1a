"""Minimal systemd notification protocol (sd_notify(3)) without a dependency.

With ``Type=notify`` systemd considers the service started only when it sends
``READY=1`` (after the models are loaded and the camera is open), and with
``WatchdogSec=`` it restarts the service when ``WATCHDOG=1`` stops arriving,
which catches a wedged main loop that a crash-only ``Restart=`` would miss.
Outside systemd (no ``$NOTIFY_SOCKET``) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def _address() -> str | None:
    """The notify socket address: a path, or an abstract name ('@' prefix) as '\\0' + name."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr.startswith("@"):
        return "\0" + addr[1:]
    if addr.startswith("/"):
        return addr
    log.debug("ignoring NOTIFY_SOCKET=%r: not a unix socket path or abstract name", addr)
    return None


def notify(*assignments: str) -> bool:
    """Send ``KEY=value`` lines to systemd; True if sent, False when not under systemd or on error.

    Errors are logged, never raised: a failed notification must not take the service down.
    """
    addr = _address()
    if addr is None or not assignments:
        return False
    message = "\n".join(assignments).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(message)
    except OSError as exc:
        log.warning("systemd notification %s failed: %s", assignments[0].split("=", 1)[0], exc)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Tell systemd start-up is complete (``Type=notify`` waits for this)."""
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def watchdog() -> bool:
    """Keep-alive ping; send at least every ``watchdog_interval()`` seconds."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """One-line state shown by ``systemctl status``."""
    return notify(f"STATUS={text.splitlines()[0] if text else ''}")


def stopping(status_text: str | None = None) -> bool:
    """Tell systemd a clean shutdown has begun (so a slow stop is not mistaken for a hang)."""
    return notify("STOPPING=1", *([f"STATUS={status_text}"] if status_text else []))


def watchdog_interval() -> float | None:
    """Seconds between ``watchdog()`` pings (half of ``$WATCHDOG_USEC``), or None when no watchdog is set.

    Half the timeout leaves a whole interval of slack for a slow iteration.
    ``$WATCHDOG_PID``, when set, must be this process: a child must not ping for its parent.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 2_000_000 if value > 0 else None
