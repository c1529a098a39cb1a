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
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from edge import state_files as files
from edge.state_files import StorageError

log = logging.getLogger(__name__)

DAYS_KEPT = 8  # day totals kept: today, and a week back for a clock that is behind
FILE_NAME = "state.sqlite3"

T = TypeVar("T")


def _iso_seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def local_date(iso_utc: str) -> str:
    """The device's local date (its time zone, e.g. ``timedatectl set-timezone``) at a UTC instant."""
    return datetime.fromisoformat(iso_utc.replace("Z", "+00:00")).astimezone().date().isoformat()


def _dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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
            self._init_meta(self._conn, next_seq=1)
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
            with self._transaction(conn) as c:
                if fresh or c.execute("SELECT 1 FROM meta WHERE key = 'stream'").fetchone() is None:
                    self._init_meta(c, next_seq=1)
                    self._migrate(c)
                self._check_continuity(c)
                # A real write, so a disk that cannot take one (full, failing) shows now, before a
                # window is finished: the store starts in memory instead of failing at every start.
                self._set(c, "opened_at", repr(time.time()))
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(files.explain(self.path, exc)) from exc
        # The bound may have been lowered since the last run: apply it now, not at the next window.
        with self._transaction(conn) as c:
            self._evict(c)
        return conn

    @staticmethod
    def _init_meta(c: sqlite3.Connection, next_seq: int) -> None:
        defaults = {"stream": str(uuid.uuid4()), "next": str(next_seq), "evicted": "0"}
        for key, value in defaults.items():
            c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _migrate(self, c: sqlite3.Connection) -> None:
        """Take over the numbering, day total, checkpoint and unsent windows of the two files that
        held them before (``seq.sqlite3``, ``spool.sqlite3``), then rename those ``*.migrated``."""
        old = files.read_legacy(self.path.parent)
        if old is None:
            return
        c.executemany("INSERT OR REPLACE INTO spool VALUES (?, ?, ?, ?)", old.windows)
        self._set(c, "stream", old.stream or self._get(c=c, key="stream"))
        self._set(c, "next", str(old.next_seq))
        if old.checkpoint is not None:
            self._set(c, "checkpoint", old.checkpoint)
        if old.day is not None:
            c.execute("INSERT OR REPLACE INTO days VALUES (?, ?)", old.day)
        files.retire_legacy(self.path.parent)
        self._write_mark(c)
        self.notices.append(
            f"moved the state of {' and '.join(files.LEGACY_FILES)} into {self.path.name} "
            f"({len(old.windows)} unsent window(s), next seq {old.next_seq}); the old files are kept as *.migrated"
        )

    def _check_continuity(self, c: sqlite3.Connection) -> None:
        """Compare the database with its mark; on any doubt start a new stream (see the module)."""
        stream, next_seq = self._get(c=c, key="stream"), int(self._get(c=c, key="next"))
        mark = files.read_mark(self.mark_path)
        doubt = None
        if mark is None:
            if next_seq > 1:
                doubt = f"its mark {self.mark_path.name} is missing"
        elif mark.get("stream") != stream:
            doubt = f"it holds stream {stream} where its mark says {mark.get('stream')} (restored or replaced)"
        elif int(mark.get("seq", 0)) >= next_seq:
            doubt = f"it would number from seq {next_seq} where seq {mark['seq']} was already taken (lost writes)"
        if mark is not None:
            next_seq = max(next_seq, int(mark.get("seq", 0)) + 1)
            for date, visitors in (mark.get("days") or {}).items():  # a day total is never lowered
                c.execute(
                    "INSERT INTO days VALUES (?, ?) ON CONFLICT(date) DO UPDATE SET visitors = MAX(visitors, ?)",
                    (date, int(visitors), int(visitors)),
                )
        if doubt is not None:
            new = self._new_stream(c, next_seq)
            self.notices.append(
                f"state file {self.path} cannot be trusted to continue stream {stream}: {doubt}; "
                f"windows go out under a new stream {new} from seq {next_seq}, so no (stream, seq) is "
                "used twice"
            )
            self._write_mark(c)

    def _new_stream(self, c: sqlite3.Connection, next_seq: int) -> str:
        stream = str(uuid.uuid4())
        self._set(c, "stream", stream)
        self._set(c, "next", str(next_seq))
        c.execute("DELETE FROM meta WHERE key = 'last_start'")
        return stream

    def _write_mark(self, c: sqlite3.Connection) -> None:
        """Mirror the highest seq taken and the day totals into the mark (after the commit that
        took them; a mark behind its database by a crash in between is harmless)."""
        if not self._durable:
            return
        days = dict(c.execute("SELECT date, visitors FROM days").fetchall())
        stream, seq = self._get(c=c, key="stream"), int(self._get(c=c, key="next")) - 1
        files.write_mark(self.mark_path, {"stream": stream, "seq": seq, "days": days})

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``change`` in a transaction; if the file cannot be written, carry on in memory."""
        with self._lock:
            try:
                with self._transaction(self._conn) as c:
                    return change(c)
            except (sqlite3.Error, OSError) as exc:
                if self.failure is not None:
                    raise  # already in memory: a bug, not storage
                self._to_memory(exc)
            with self._transaction(self._conn) as c:
                return change(c)

    def _to_memory(self, exc: BaseException) -> None:
        """Storage failed: copy what can be read into memory and continue there under a new stream."""
        disk, memory = self._conn, files.memory()
        copied = 0
        next_seq = 1
        old = None
        try:
            old = self._get(c=disk, key="stream")
            next_seq = int(self._get(c=disk, key="next"))
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
        self._init_meta(memory, next_seq)
        self.failure = f"state file {self.path} cannot be written: {getattr(exc, 'strerror', None) or exc}"
        log.error(
            "%s; windows are kept and delivered from memory under a new stream %s (was %s; %d unsent window(s) "
            "carried over): what is not delivered when this process ends is lost",
            self.failure,
            self._get(c=memory, key="stream"),
            old,
            copied,
        )

    @property
    def stream(self) -> str:
        """The stream windows are numbered under now."""
        with self._lock:
            return self._get("stream")

    def _get(self, key: str, c: sqlite3.Connection | None = None) -> str:
        conn = c if c is not None else self._conn
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return str(row[0])

    @staticmethod
    def _set(c: sqlite3.Connection, key: str, value: str) -> None:
        c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

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

    def finish(self, window: Mapping[str, Any]) -> dict[str, Any]:
        """Number a finished window and spool it, in one transaction: takes the next seq (on a new
        stream if the window starts before the start of the last one this stream stored), adds its visitors to
        its local day's total (published as ``today``), drops the checkpoint it replaces. Returns
        the payload as it is published."""
        start = window["window"]["start"]
        date = local_date(start)

        def change(c: sqlite3.Connection) -> dict[str, Any]:
            last = c.execute("SELECT value FROM meta WHERE key = 'last_start'").fetchone()
            if last is not None and _iso_seconds(start) < float(last[0]):
                old = self._get(c=c, key="stream")
                new = self._new_stream(c, int(self._get(c=c, key="next")))
                log.warning(
                    "window %s starts before the last window stream %s stored (the clock is behind it, e.g. "
                    "a restart before time sync): it and the windows after it go out under a new stream %s",
                    start,
                    old,
                    new,
                )
            seq = int(self._get(c=c, key="next"))
            self._set(c, "next", str(seq + 1))
            self._set(c, "last_start", repr(_iso_seconds(start)))
            c.execute(
                "INSERT INTO days VALUES (?, ?) ON CONFLICT(date) DO UPDATE SET visitors = visitors + ?",
                (date, window["visitors"] or 0, window["visitors"] or 0),
            )
            c.execute(
                "DELETE FROM days WHERE date NOT IN (SELECT date FROM days ORDER BY date DESC LIMIT ?)", (DAYS_KEPT,)
            )
            (total,) = c.execute("SELECT visitors FROM days WHERE date = ?", (date,)).fetchone()
            saved = c.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
            if saved is not None and json.loads(saved[0]).get("window", {}).get("start") == start:
                c.execute("DELETE FROM meta WHERE key = 'checkpoint'")
            payload = _numbered(window, self._get(c=c, key="stream"), seq, date, int(total))
            c.execute("INSERT INTO spool VALUES (?, ?, ?, ?)", (seq, payload["stream"], _dumps(payload), time.time()))
            self._evict(c)
            return payload

        payload = self._write(change)
        with self._lock:
            try:
                self._write_mark(self._conn)
            except OSError as exc:
                log.warning("state mark %s not written (%s): a restart will start a new stream", self.mark_path, exc)
        return payload

    def save_checkpoint(self, payload: Mapping[str, Any]) -> None:
        """Keep the open window's payload so far (already suppressed, as it would be published)."""
        text = _dumps(payload)
        self._write(lambda c: self._set(c, "checkpoint", text))

    def checkpoint(self) -> dict[str, Any] | None:
        """The open window a previous run left behind, or None after a clean stop."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def today(self, date: str) -> int:
        """Published visitors of ``date`` (the device's local date) so far."""
        with self._lock:
            row = self._conn.execute("SELECT visitors FROM days WHERE date = ?", (date,)).fetchone()
        return 0 if row is None else int(row[0])

    # ------------------------------------------------------------------ the spool, for the sink

    def put(self, payload: Mapping[str, Any]) -> int:
        """Spool a numbered window (one ``finish`` already spooled is left as it is); returns its seq."""
        seq = payload.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError(f"a window payload needs an integer 'seq', got {seq!r}")
        text = _dumps(payload)

        def change(c: sqlite3.Connection) -> int:
            c.execute(
                "INSERT OR IGNORE INTO spool VALUES (?, ?, ?, ?)",
                (seq, str(payload.get("stream") or ""), text, time.time()),
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
            return int(self._get("evicted"))

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


def _numbered(window: Mapping[str, Any], stream: str, seq: int, date: str, today: int) -> dict[str, Any]:
    """The window with its stream, seq and ``today`` (the day's running total, after ``visitors``)."""
    out: dict[str, Any] = {}
    for key, value in window.items():
        out[key] = value
        if key == "visitors":
            out["today"] = {"date": date, "visitors": today}
    out["stream"], out["seq"] = stream, seq
    return out
