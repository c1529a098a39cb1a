"""Process memory: keep glibc from holding freed frame buffers, and read RSS for reports.

glibc serves a large ``malloc`` with its own ``mmap`` and gives it back on ``free`` -- until the
first such block is freed, after which it raises that threshold (up to 32 MB) and serves frame-sized
blocks from the heap, which it rarely returns. Analysing photos of different sizes then ratchets RSS
up by tens of MB (README "Memory"). Fixing the threshold keeps every frame-sized buffer returnable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from pathlib import Path

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks of this size and more come from mmap and go back to the system when freed. A 640x480
# RGB frame is 900 KB; model tensors and crops stay below it and keep malloc's fast path.
MMAP_THRESHOLD = 256 * 1024


def settle_malloc(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds for this process; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.debug("no mallopt in this C library: malloc thresholds left as they are")
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold))
    log.debug("malloc mmap/trim thresholds %s at %d bytes", "set" if ok else "not set", threshold)
    return ok


def rss_mb() -> dict[str, float]:
    """Current and peak resident memory of this process in MB, with the peak split by kind where
    the kernel says (``RssAnon``: the process's own; ``RssFile``: mapped library and model pages,
    which depend on how the page cache holds those files)."""
    fields: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile") and value.strip().endswith("kB"):
                fields[key] = int(value.split()[0]) / 1024.0
    except OSError:
        pass
    return fields
