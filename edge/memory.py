"""Process memory: hand freed buffers back to the system, and read RSS for reports.

glibc keeps memory freed in the middle of its heap mapped: after photos of different sizes, whose
buffers land at different places, RSS ratchets up by tens of MB although little is in use
(docs/performance.md, "Memory"). ``FreeMemory.release`` returns those pages; callers run it between inputs, not per
frame, because a page handed back costs a page fault when it is used again.
"""

from __future__ import annotations

import ctypes
import logging
import resource
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` from the symbols already loaded into this process (no library
    search, which would run ``ldconfig``); None where the C library has none."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


class FreeMemory:
    """Returns the C heap's free pages to the system on ``release()`` (glibc's ``malloc_trim``);
    does nothing where the C library has no such call."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()
        if self._trim is None:
            log.debug("no malloc_trim in this C library: freed heap pages stay mapped")

    def release(self) -> None:
        if self._trim is not None:
            self._trim(0)


def rss_mb() -> dict[str, float]:
    """Current and peak resident memory of this process in MB (``VmRSS``, ``VmHWM``), with the
    current split by kind (``RssAnon``: the process's own; ``RssFile``: mapped library and model
    pages, whose count depends on how the page cache holds those files)."""
    fields: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile") and value.strip().endswith("kB"):
                fields[key] = int(value.split()[0]) / 1024.0
    except OSError:
        pass
    return fields


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (what the budget of 150 MB is about)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
