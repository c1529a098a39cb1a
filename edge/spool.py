"""Durable store-and-forward queue of finished windows, and the sequence counter.

A device may be offline for days and may lose power at any moment. A window is
therefore written to SQLite (WAL, ``synchronous=FULL``) and committed *before*
anyone tries to publish it, and removed only once the broker has acknowledged
it. The queue is bounded: when full, the oldest windows are dropped (the
newest data is the most useful) and the drop is counted durably, so a
consumer can see that a gap is a known loss and not a bug.

``SeqStore`` is the device's durable identity and numbering: a stream id
(random, created with the state directory) and window sequence numbers that
keep increasing across restarts. Consumers de-duplicate on ``(device, stream,
seq)``: a seq is never reused within a stream, each is committed to disk
before it is returned, and a lost state directory starts a new stream rather
than reusing old numbers under the old key. It also keeps a checkpoint of the
open window, so a run that ends without closing it (SIGKILL, power loss) has
that window published by the next run, as partial, with what it had counted
by the checkpoint.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

_BUSY_TIMEOUT_MS = 10_000  # another process (a previous instance) may still hold the file briefly


class StorageError(RuntimeError):
    """A state file cannot be opened or set up; the message names the file and the likely cause."""


def _explain(path: Path, exc: BaseException) -> str:
    """``exc`` on ``path`` with what the operator can do about it."""
    folder = path.parent
    text = f"state file {path} cannot be opened: {getattr(exc, 'strerror', None) or exc}"
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        return f"{text} (the folder {folder} is not writable for user {getpass.getuser()!r})"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"{text} (the file is not readable and writable for user {getpass.getuser()!r})"
    return f"{text} (the disk holding {folder} is full)" if _disk_full(folder) else text


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 256 * 1024
    except OSError:
        return False


def _connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with the durability settings both stores need.

    On a full disk SQLite cannot create the WAL index file (``-shm``) a shared WAL database
    needs; the store is then opened in exclusive locking mode (the index lives in memory; only
    this process may use the file, which the state lock guarantees anyway), so a restart on a
    full disk keeps counting instead of dying.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(_explain(path, exc)) from exc
    try:
        return _open(path, exclusive=False)
    except sqlite3.Error as exc:
        if not path.exists() or not _disk_full(path.parent):
            raise StorageError(_explain(path, exc)) from exc
        log.warning("%s; opening it for this process alone, which needs no new file", _explain(path, exc))
        try:
            return _open(path, exclusive=True)
        except sqlite3.Error as again:
            raise StorageError(_explain(path, again)) from again


def _open(path: Path, exclusive: bool) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a commit is exactly where we say.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000)
    try:
        return _configure(conn, path, exclusive)
    except BaseException:
        conn.close()
        raise


def _configure(conn: sqlite3.Connection, path: Path, exclusive: bool) -> sqlite3.Connection:
    conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    if exclusive:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        log.warning(
            "SQLite at %s does not support WAL (journal_mode=%s); durability is unchanged but slower", path, mode
        )
    # FULL: a COMMIT returns only after the WAL is fsynced, so a power cut cannot lose it.
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) under the store's lock."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn, self._lock = conn, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._conn

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self._lock.release()


class Spool:
    """Bounded, durable FIFO of window payloads keyed by their ``seq``.

    Thread-safe: one connection guarded by a lock (the sink's drain thread and
    the analysis thread both use it; contention is a few writes a minute).
    """

    def __init__(self, path: str | Path, max_windows: int) -> None:
        if max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {max_windows}")
        self.path = Path(path)
        self.max_windows = max_windows
        self._lock = threading.Lock()
        self._conn = _connect(self.path)
        try:
            with self._tx() as c:
                c.execute(
                    "CREATE TABLE IF NOT EXISTS windows ("
                    " seq INTEGER PRIMARY KEY, payload TEXT NOT NULL, stored_at REAL NOT NULL)"
                )
                c.execute("CREATE TABLE IF NOT EXISTS spool_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
                c.execute("INSERT OR IGNORE INTO spool_meta (key, value) VALUES ('evicted', 0)")
            # The bound may have been lowered since the last run: apply it now, not at the next put.
            with self._tx() as c:
                self._evict(c)
        except sqlite3.Error as exc:
            self._conn.close()
            raise StorageError(_explain(self.path, exc)) from exc

    def _tx(self) -> _Transaction:
        return _Transaction(self._conn, self._lock)

    def _evict(self, c: sqlite3.Connection) -> int:
        """Drop the oldest rows beyond ``max_windows``; count them. Caller holds a transaction."""
        excess = int(c.execute("SELECT COUNT(*) FROM windows").fetchone()[0]) - self.max_windows
        if excess <= 0:
            return 0
        dropped = [r[0] for r in c.execute("SELECT seq FROM windows ORDER BY seq LIMIT ?", (excess,))]
        c.execute("DELETE FROM windows WHERE seq IN (SELECT seq FROM windows ORDER BY seq LIMIT ?)", (excess,))
        c.execute("UPDATE spool_meta SET value = value + ? WHERE key = 'evicted'", (excess,))
        log.warning(
            "spool full (%d windows): dropped the oldest unsent window(s) seq %s",
            self.max_windows,
            ", ".join(map(str, dropped)),
        )
        return excess

    def put(self, payload: Mapping[str, Any]) -> int:
        """Store a window durably (committed and fsynced on return); returns its ``seq``.

        Storing a seq that is already spooled replaces it (a retried put is harmless).
        """
        seq = payload.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError(f"a window payload needs an integer 'seq', got {seq!r}")
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO windows (seq, payload, stored_at) VALUES (?, ?, ?)", (seq, text, time.time())
            )
            self._evict(c)
        return int(seq)

    def pending(self, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` unacknowledged windows, oldest (lowest seq) first."""
        with self._lock:
            rows = self._conn.execute("SELECT seq, payload FROM windows ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(seq, json.loads(text)) for seq, text in rows]

    def ack(self, seq: int) -> bool:
        """Remove a delivered window; False when it was not there (already acked or evicted)."""
        with self._tx() as c:
            return c.execute("DELETE FROM windows WHERE seq = ?", (seq,)).rowcount > 0

    def depth(self) -> int:
        """Windows waiting for delivery."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM windows").fetchone()[0])

    def oldest_age_s(self, now: float | None = None) -> float | None:
        """Seconds since the oldest waiting window was stored (None when empty): how far behind delivery is."""
        with self._lock:
            (oldest,) = self._conn.execute("SELECT MIN(stored_at) FROM windows").fetchone()
        if oldest is None:
            return None
        return max(0.0, (time.time() if now is None else now) - float(oldest))

    @property
    def evicted(self) -> int:
        """Windows dropped because the spool was full, over the file's whole life."""
        with self._lock:
            return int(self._conn.execute("SELECT value FROM spool_meta WHERE key = 'evicted'").fetchone()[0])

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """Depth, oldest age and eviction count, as published in health messages."""
        age = self.oldest_age_s(now)
        return {
            "depth": self.depth(),
            "oldest_age_s": None if age is None else round(age, 1),
            "evicted": self.evicted,
            "max_windows": self.max_windows,
        }

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SeqStore:
    """Persistent stream id, strictly increasing window sequence numbers, and the open window's checkpoint.

    May share the spool's database file (its own tables) or use a file of its own.
    """

    def __init__(self, path: str | Path, start: int = 1) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = _connect(self.path)
        try:
            with _Transaction(self._conn, self._lock) as c:
                c.execute("CREATE TABLE IF NOT EXISTS seq_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
                c.execute("INSERT OR IGNORE INTO seq_state (key, value) VALUES ('next', ?)", (start,))
                c.execute("CREATE TABLE IF NOT EXISTS text_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                c.execute("INSERT OR IGNORE INTO text_state (key, value) VALUES ('stream', ?)", (str(uuid.uuid4()),))
                self.stream: str = c.execute("SELECT value FROM text_state WHERE key = 'stream'").fetchone()[0]
        except sqlite3.Error as exc:
            self._conn.close()
            raise StorageError(_explain(self.path, exc)) from exc

    def peek(self) -> int:
        """The number ``next()`` would return, without taking it."""
        with self._lock:
            return int(self._conn.execute("SELECT value FROM seq_state WHERE key = 'next'").fetchone()[0])

    def next(self, window_start: str | None = None) -> int:
        """Take the next number; the increment is committed before it is returned, so no reuse after a crash.

        ``window_start``: the window being numbered; its checkpoint is dropped in the same
        transaction, so a window is never published both whole and from its checkpoint.
        """
        with _Transaction(self._conn, self._lock) as c:
            return _take(c, window_start)

    def number(self, window_start: str, local_date: str, visitors: int | None) -> tuple[int, int]:
        """Number a window and add its published visitors to the day's running total, in one
        transaction (``next`` plus the total): returns (seq, visitors so far on ``local_date``).

        The total restarts at 0 on a new local date and survives restarts.
        """
        with _Transaction(self._conn, self._lock) as c:
            seq = _take(c, window_start)
            row = c.execute("SELECT value FROM text_state WHERE key = 'day'").fetchone()
            day = json.loads(row[0]) if row is not None else {}
            total = int(day.get("visitors", 0)) if day.get("date") == local_date else 0
            total += visitors or 0
            c.execute(
                "INSERT OR REPLACE INTO text_state (key, value) VALUES ('day', ?)",
                (json.dumps({"date": local_date, "visitors": total}),),
            )
        return seq, total

    def save_checkpoint(self, payload: Mapping[str, Any]) -> None:
        """Keep the open window's payload so far (already suppressed, as it would be published)."""
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        with _Transaction(self._conn, self._lock) as c:
            c.execute("INSERT OR REPLACE INTO text_state (key, value) VALUES ('checkpoint', ?)", (text,))

    def checkpoint(self) -> dict[str, Any] | None:
        """The open window a previous run left behind, or None after a clean stop."""
        with self._lock:
            return _checkpoint(self._conn)

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SeqStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _checkpoint(conn: sqlite3.Connection) -> dict[str, Any] | None:
    row = conn.execute("SELECT value FROM text_state WHERE key = 'checkpoint'").fetchone()
    return None if row is None else dict(json.loads(row[0]))


def _take(c: sqlite3.Connection, window_start: str | None) -> int:
    """Inside a transaction: the next seq, and the numbered window's checkpoint dropped."""
    (value,) = c.execute("SELECT value FROM seq_state WHERE key = 'next'").fetchone()
    c.execute("UPDATE seq_state SET value = ? WHERE key = 'next'", (value + 1,))
    if window_start is not None:
        saved = _checkpoint(c)
        if saved is not None and saved.get("window", {}).get("start") == window_start:
            c.execute("DELETE FROM text_state WHERE key = 'checkpoint'")
    return int(value)
