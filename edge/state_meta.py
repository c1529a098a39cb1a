"""The rows beside the windows in the state database: its meta keys, a new stream, the
transaction every change runs in, and what opening an existing file checks (the continuity of its
numbering against ``state.mark``, and the take-over of the two files of earlier releases).

Kept apart from ``edge.state_store`` (what the daemon and the sinks call) so each reads as one job.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge import state_files as files


def get(c: sqlite3.Connection, key: str) -> str:
    row = c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise KeyError(key)
    return str(row[0])


def put(c: sqlite3.Connection, key: str, value: str) -> None:
    c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def init(c: sqlite3.Connection, next_seq: int) -> None:
    """A new database's (or memory's) meta rows: a fresh stream numbering from ``next_seq``."""
    defaults = {"stream": str(uuid.uuid4()), "next": str(next_seq), "evicted": "0"}
    for key, value in defaults.items():
        c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))


def new_stream(c: sqlite3.Connection, next_seq: int) -> str:
    stream = str(uuid.uuid4())
    put(c, "stream", stream)
    put(c, "next", str(next_seq))
    c.execute("DELETE FROM meta WHERE key = 'last_start'")
    return stream


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def mark(c: sqlite3.Connection) -> dict[str, Any]:
    """What ``state.mark`` mirrors: the stream, the highest seq taken and the day totals."""
    days = dict(c.execute("SELECT date, visitors FROM days").fetchall())
    return {"stream": get(c, "stream"), "seq": int(get(c, "next")) - 1, "days": days}


def migrate(c: sqlite3.Connection, path: Path) -> str | None:
    """Take over the numbering, day total, checkpoint and unsent windows of the two files that
    held them before (``seq.sqlite3``, ``spool.sqlite3``), then rename those ``*.migrated``.
    Returns what was done, for the log (None when there was nothing to take over)."""
    old = files.read_legacy(path.parent)
    if old is None:
        return None
    c.executemany("INSERT OR REPLACE INTO spool VALUES (?, ?, ?, ?)", old.windows)
    put(c, "stream", old.stream or get(c, "stream"))
    put(c, "next", str(old.next_seq))
    if old.checkpoint is not None:
        put(c, "checkpoint", old.checkpoint)
    if old.day is not None:
        c.execute("INSERT OR REPLACE INTO days VALUES (?, ?)", old.day)
    files.retire_legacy(path.parent)
    return (
        f"moved the state of {' and '.join(files.LEGACY_FILES)} into {path.name} "
        f"({len(old.windows)} unsent window(s), next seq {old.next_seq}); the old files are kept as *.migrated"
    )


def check_continuity(c: sqlite3.Connection, path: Path, mark_path: Path) -> str | None:
    """Compare the database with its mark; on any doubt start a new stream (``edge.state_store``
    says when) and return why, for the log. Day totals are raised to the mark's, never lowered."""
    stream, next_seq = get(c, "stream"), int(get(c, "next"))
    saved = files.read_mark(mark_path)
    doubt = None
    if saved is None:
        if next_seq > 1:
            doubt = f"its mark {mark_path.name} is missing"
    elif saved.get("stream") != stream:
        doubt = f"it holds stream {stream} where its mark says {saved.get('stream')} (restored or replaced)"
    elif int(saved.get("seq", 0)) >= next_seq:
        doubt = f"it would number from seq {next_seq} where seq {saved['seq']} was already taken (lost writes)"
    if saved is not None:
        next_seq = max(next_seq, int(saved.get("seq", 0)) + 1)
        for date, visitors in (saved.get("days") or {}).items():  # a day total is never lowered
            c.execute(
                "INSERT INTO days VALUES (?, ?) ON CONFLICT(date) DO UPDATE SET visitors = MAX(visitors, ?)",
                (date, int(visitors), int(visitors)),
            )
    if doubt is None:
        return None
    new = new_stream(c, next_seq)
    return (
        f"state file {path} cannot be trusted to continue stream {stream}: {doubt}; "
        f"windows go out under a new stream {new} from seq {next_seq}, so no (stream, seq) is used twice"
    )
