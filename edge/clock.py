"""The daemon's time source: wall clock (labels windows) and monotonic clock (durations).

Passed in rather than read from ``time`` directly, so a test can step the wall
clock the way NTP does on a board without a real-time clock, without patching
libc or sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def wall(self) -> float:
        """Seconds since the epoch (may jump when the system clock is set)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never jumps."""
        ...


class SystemClock:
    """The machine's clocks."""

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
