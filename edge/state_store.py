"""The device's one state store: window numbers, the spool of unsent windows, the open window's
checkpoint and the day's running totals, in one SQLite database, changed together.

Finishing a window is one transaction (``StateStore.finish``): it takes the window's ``seq``,
adds its visitors to its day's total, writes the numbered payload to the spool and drops the
checkpoint it replaces. A crash leaves all of that or none of it. The sink then delivers from the
spool and acknowledges (``ack``) what the consumer has.

Consumers de-duplicate on ``(device, stream, seq)``, so the store must never hand out the same
pair for two different windows. SQLite alone cannot promise that when storage goes back in time
(a lost ``-wal`` file, ``cp *.sqlite3`` from a backup, an SD card that drops acknowledged writes),
so after every commit that takes numbers the store mirrors its highest seq and day total into a
small second file (``state.mark``). At start a database behind its mark, a mark from another
stream, or a numbered database without a mark means the history is in doubt: the store starts a
**new stream** (numbers keep increasing) and says why. A window whose start lies before the last
window the stream stored (a clock behind after a restart: a Pi without a real-time clock before
NTP) also starts a new stream, so no stream ever holds two windows for the same time (a restart
within a window publishes a second partial window of the same start, as it always did).

When the database cannot be written (disk full, a file system remounted read-only by a failing
SD card, an I/O error) the store carries on **in memory** under a new stream: unsent windows it
can still read and every later one are delivered from there, and ``failure`` says why, for the
health message and for the daemon, which stops after delivery so the service restarts it.
A database that is not a database (corrupt) is moved aside, named in the log, and a new one made.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from edge import state_files as files
from edge import state_meta as meta
from edge.state_files import StorageError
from edge.window import DayTotal, Window

log = logging.getLogger(__name__)

DAYS_KEPT = 8  # day totals kept: today, and a week back for a clock that is behind
FILE_NAME = "state.sqlite3"

T = TypeVar("T")


def _iso_seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def local_date(iso_utc: str) -> str:
    """The device's local date (its time zone, e.g. ``timedatectl set-timezone``) at a UTC instant."""
    return datetime.fromisoformat(iso_utc.replace("Z", "+00:00")).astimezone().date().isoformat()


def _dumps(window: Window) -> str:
    return json.dumps(window.to_payload(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class StateStore:
    """Numbers, spools and checkpoints windows for one daemon (see the module docstring).

    Thread-safe: one connection guarded by a lock (the sink's delivery thread and the analysis
    thread both use it; a few writes a minute).
    """

    def __init__(self, path: str | Path, max_windows: int, *, memory: bool = False) -> None:
        if max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {max_windows}")
        self.path = Path(path)
        self.mark_path = self.path.with_suffix(".mark")  # state.sqlite3 -> state.mark
        self.max_windows = max_windows
        self._lock = threading.Lock()
        self.failure: str | None = None  # why windows live in memory only (storage failed)
        self._durable = not memory
        self.notices: list[str] = []  # what opening found and did (a new stream, a file moved aside)
        if memory:
            self._conn = files.memory()
            meta.init(self._conn, next_seq=1)
        else:
            try:
                self._conn = self._open()
            except StorageError as exc:
                # A folder the user may not write is the operator's to fix (``edge check`` says so);
                # a full disk or an I/O error is not: count on, in memory.
                if not os.access(self.path.parent, os.W_OK | os.X_OK):
                    raise
                self._conn = files.read_only(self.path)
                self._to_memory(exc.__cause__ or exc)
        for notice in self.notices:
            log.warning("%s", notice)

    # ------------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(files.explain(self.path, exc)) from exc
        fresh = not self.path.exists()
        try:
            conn = files.open_file(self.path)
        except sqlite3.DatabaseError as exc:
            if not files.corrupt(exc):
                raise StorageError(files.explain(self.path, exc)) from exc
            aside = files.move_aside(self.path)
            self.notices.append(
                f"state file {self.path} is corrupt ({exc}); moved aside to {aside.name}: its unsent "
                "windows are not delivered, a new stream starts"
            )
            fresh = True
            try:
                conn = files.open_file(self.path)
            except sqlite3.Error as again:
                raise StorageError(files.explain(self.path, again)) from again
        try:
            with meta.transaction(conn) as c:
                if fresh or c.execute("SELECT 1 FROM meta WHERE key = 'stream'").fetchone() is None:
                    meta.init(c, next_seq=1)
                    if (moved := meta.migrate(c, self.path)) is not None:
                        self.notices.append(moved)
                        self._write_mark(c)
                if (doubt := meta.check_continuity(c, self.path, self.mark_path)) is not None:
                    self.notices.append(doubt)
                    self._write_mark(c)
                # A real write, so a disk that cannot take one (full, failing) shows now, before a
                # window is finished: the store starts in memory instead of failing at every start.
                meta.put(c, "opened_at", repr(time.time()))
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(files.explain(self.path, exc)) from exc
        # The bound may have been lowered since the last run: apply it now, not at the next window.
        with meta.transaction(conn) as c:
            self._evict(c)
        return conn

    def _write_mark(self, c: sqlite3.Connection) -> None:
        """Mirror the highest seq taken and the day totals into the mark (after the commit that
        took them; a mark behind its database by a crash in between is harmless)."""
        if self._durable:
            files.write_mark(self.mark_path, meta.mark(c))

    # ------------------------------------------------------------------ plumbing

    def _write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``change`` in a transaction; if the file cannot be written, carry on in memory."""
        with self._lock:
            try:
                with meta.transaction(self._conn) as c:
                    return change(c)
            except (sqlite3.Error, OSError) as exc:
                if self.failure is not None:
                    raise  # already in memory: a bug, not storage
                self._to_memory(exc)
            with meta.transaction(self._conn) as c:
                return change(c)

    def _to_memory(self, exc: BaseException) -> None:
        """Storage failed: copy what can be read into memory and continue there under a new stream."""
        disk, memory = self._conn, files.memory()
        copied = 0
        next_seq = 1
        old = None
        try:
            old = meta.get(disk, "stream")
            next_seq = int(meta.get(disk, "next"))
            for row in disk.execute("SELECT seq, stream, payload, stored_at FROM spool ORDER BY seq"):
                memory.execute("INSERT INTO spool VALUES (?, ?, ?, ?)", row)
                copied += 1
            for row in disk.execute("SELECT key, value FROM meta WHERE key IN ('evicted', 'checkpoint')"):
                memory.execute("INSERT INTO meta VALUES (?, ?)", row)
            memory.executemany("INSERT INTO days VALUES (?, ?)", disk.execute("SELECT date, visitors FROM days"))
        except (sqlite3.Error, KeyError) as read_error:
            log.error("state file %s cannot be read either (%s): its unsent windows stay there", self.path, read_error)
        with contextlib.suppress(sqlite3.Error):
            disk.close()
        self._conn = memory
        self._durable = False
        meta.init(memory, next_seq)
        self.failure = f"state file {self.path} cannot be written: {getattr(exc, 'strerror', None) or exc}"
        log.error(
            "%s; windows are kept and delivered from memory under a new stream %s (was %s; %d unsent window(s) "
            "carried over): what is not delivered when this process ends is lost",
            self.failure,
            meta.get(memory, "stream"),
            old,
            copied,
        )

    @property
    def stream(self) -> str:
        """The stream windows are numbered under now."""
        with self._lock:
            return meta.get(self._conn, "stream")

    def _evict(self, c: sqlite3.Connection) -> int:
        """Drop the oldest rows beyond ``max_windows``; count them. Caller holds a transaction."""
        excess = int(c.execute("SELECT COUNT(*) FROM spool").fetchone()[0]) - self.max_windows
        if excess <= 0:
            return 0
        dropped = [r[0] for r in c.execute("SELECT seq FROM spool ORDER BY seq LIMIT ?", (excess,))]
        c.execute("DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT ?)", (excess,))
        c.execute("UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'evicted'", (excess,))
        log.warning(
            "spool full (%d windows): dropped the oldest unsent window(s) seq %s",
            self.max_windows,
            ", ".join(map(str, dropped)),
        )
        return excess

    # ------------------------------------------------------------------ windows

    def finish(self, window: Window) -> Window:
        """Number a finished window and spool it, in one transaction: takes the next seq (on a new
        stream if the window starts before the start of the last one this stream stored), adds its visitors to
        its local day's total (published as ``today``), drops the checkpoint it replaces. Returns
        the window as it is published."""
        start = window.span.start
        date = local_date(start)

        def change(c: sqlite3.Connection) -> Window:
            last = c.execute("SELECT value FROM meta WHERE key = 'last_start'").fetchone()
            if last is not None and _iso_seconds(start) < float(last[0]):
                old = meta.get(c, "stream")
                new = meta.new_stream(c, int(meta.get(c, "next")))
                log.warning(
                    "window %s starts before the last window stream %s stored (the clock is behind it, e.g. "
                    "a restart before time sync): it and the windows after it go out under a new stream %s",
                    start,
                    old,
                    new,
                )
            seq = int(meta.get(c, "next"))
            meta.put(c, "next", str(seq + 1))
            meta.put(c, "last_start", repr(_iso_seconds(start)))
            c.execute(
                "INSERT INTO days VALUES (?, ?) ON CONFLICT(date) DO UPDATE SET visitors = visitors + ?",
                (date, window.visitors or 0, window.visitors or 0),
            )
            c.execute(
                "DELETE FROM days WHERE date NOT IN (SELECT date FROM days ORDER BY date DESC LIMIT ?)", (DAYS_KEPT,)
            )
            (total,) = c.execute("SELECT visitors FROM days WHERE date = ?", (date,)).fetchone()
            saved = c.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
            if saved is not None and json.loads(saved[0]).get("window", {}).get("start") == start:
                c.execute("DELETE FROM meta WHERE key = 'checkpoint'")
            stream = meta.get(c, "stream")
            numbered = window.numbered(stream, seq, DayTotal(date, int(total)))
            c.execute("INSERT INTO spool VALUES (?, ?, ?, ?)", (seq, stream, _dumps(numbered), time.time()))
            self._evict(c)
            return numbered

        numbered = self._write(change)
        with self._lock:
            try:
                self._write_mark(self._conn)
            except OSError as exc:
                log.warning("state mark %s not written (%s): a restart will start a new stream", self.mark_path, exc)
        return numbered

    def save_checkpoint(self, window: Window) -> None:
        """Keep the open window so far (already suppressed, as it would be published)."""
        text = _dumps(window)
        self._write(lambda c: meta.put(c, "checkpoint", text))

    def checkpoint(self) -> Window | None:
        """The open window a previous run left behind, or None after a clean stop (or when what
        is stored cannot be read back as a window: said in the log, and not published)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
        if row is None:
            return None
        try:
            return Window.from_payload(json.loads(row[0]))
        except (ValueError, KeyError, TypeError) as exc:
            log.error(
                "the checkpoint in %s is not a window (%s: %s); not published", self.path, type(exc).__name__, exc
            )
            return None

    def today(self, date: str) -> int:
        """Published visitors of ``date`` (the device's local date) so far."""
        with self._lock:
            row = self._conn.execute("SELECT visitors FROM days WHERE date = ?", (date,)).fetchone()
        return 0 if row is None else int(row[0])

    # ------------------------------------------------------------------ the spool, for the sink

    def put(self, window: Window) -> int:
        """Spool a numbered window (one ``finish`` already spooled is left as it is); returns its seq."""
        seq = window.seq
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError(f"a window needs an integer seq to be spooled, got {seq!r}")
        text = _dumps(window)

        def change(c: sqlite3.Connection) -> int:
            c.execute(
                "INSERT OR IGNORE INTO spool VALUES (?, ?, ?, ?)",
                (seq, window.stream or "", text, time.time()),
            )
            self._evict(c)
            return int(seq)

        return self._write(change)

    def pending(self, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` unacknowledged windows, oldest (lowest seq) first."""
        with self._lock:
            rows = self._conn.execute("SELECT seq, payload FROM spool ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(seq, json.loads(text)) for seq, text in rows]

    def ack(self, seq: int) -> bool:
        """Remove a delivered window; False when it was not there (already acked or evicted)."""
        return self._write(lambda c: c.execute("DELETE FROM spool WHERE seq = ?", (seq,)).rowcount > 0)

    def depth(self) -> int:
        """Windows waiting for delivery."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def oldest_age_s(self, now: float | None = None) -> float | None:
        """Seconds since the oldest waiting window was stored (None when empty): how far behind delivery is."""
        with self._lock:
            (oldest,) = self._conn.execute("SELECT MIN(stored_at) FROM spool").fetchone()
        if oldest is None:
            return None
        return max(0.0, (time.time() if now is None else now) - float(oldest))

    @property
    def evicted(self) -> int:
        """Windows dropped because the spool was full, over the store's whole life."""
        with self._lock:
            return int(meta.get(self._conn, "evicted"))

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

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
