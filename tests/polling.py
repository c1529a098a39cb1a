"""The one way the tests (and tests/ha/check_ha.py) wait for a condition nothing signals: poll it.

A condition another process makes true (a broker that listens, a row a collector commits, a file
Node-RED appends to) has no event to wait on, so it is checked every ``interval`` seconds until
``timeout``. Timeouts are upper bounds for a loaded 2-core CI machine; a wait ends as soon as the
condition holds, so a generous bound costs nothing when things go well. Conditions that something
in the test does signal (a paho callback, a log handler) are waited on with that Event/Condition.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

INTERVAL = 0.05  # seconds between checks
WAIT = 60.0  # wait_until's default bound: a loaded 2-core CI machine, where it normally takes seconds


def poll(predicate: Callable[[], T], timeout: float, interval: float = INTERVAL) -> T | None:
    """``predicate()``'s first truthy result, or None once ``timeout`` seconds have passed (the
    predicate is always checked at least once, and once more at the deadline). An exception from
    ``predicate`` propagates: raise one to give up early (a process that exited, say)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval, left))  # the poll interval: nothing signals these conditions


def wait_until(predicate: Callable[[], T], what: str, timeout: float = WAIT, interval: float = INTERVAL) -> T:
    """``poll``, raising AssertionError naming ``what`` when ``timeout`` passes first."""
    result = poll(predicate, timeout, interval)
    if not result:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
    return result
