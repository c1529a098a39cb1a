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
import getpass
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

log = logging.getLogger(__name__)

_BUSY_TIMEOUT_MS = 10_000  # another process (a previous instance) may still hold the file briefly
DAYS_KEPT = 8  # day totals kept: today, and a week back for a clock that is behind
FILE_NAME = "state.sqlite3"
LEGACY_FILES = ("seq.sqlite3", "spool.sqlite3")  # before one store held everything

T = TypeVar("T")


class StorageError(RuntimeError):
    """The state store cannot be opened or set up; the message names the file and the likely cause."""


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


def _iso_seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def local_date(iso_utc: str) -> str:
    """The device's local date (its time zone, e.g. ``timedatectl set-timezone``) at a UTC instant."""
    return datetime.fromisoformat(iso_utc.replace("Z", "+00:00")).astimezone().date().isoformat()


def _dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS spool ("
    " seq INTEGER PRIMARY KEY, stream TEXT NOT NULL, payload TEXT NOT NULL, stored_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS days (date TEXT PRIMARY KEY, visitors INTEGER NOT NULL)",
)


def _configure(conn: sqlite3.Connection, exclusive: bool) -> None:
    conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    if exclusive:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() not in ("wal", "memory"):
        log.warning("SQLite does not support WAL here (journal_mode=%s); durability is unchanged but slower", mode)
    # FULL: a COMMIT returns only after the WAL is fsynced, so a power cut cannot lose it.
    conn.execute("PRAGMA synchronous=FULL")
    for statement in _SCHEMA:
        conn.execute(statement)


def _open_file(path: Path) -> sqlite3.Connection:
    """The database at ``path``, in autocommit mode (we say where each transaction ends).

    On a full disk SQLite cannot create the shared-memory index a WAL database needs; the file is
    then opened for this process alone (the index lives in memory; the state lock guarantees one
    process anyway), so a restart on a full disk still reads its spool."""
    last: sqlite3.Error | None = None
    for exclusive in (False, True):
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000)
        try:
            _configure(conn, exclusive)
            return conn
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _corrupt(exc) or not _disk_full(path.parent):
                raise
            log.warning("%s; opening it for this process alone, which needs no new file", _explain(path, exc))
            last = exc
    assert last is not None
    raise last


def _corrupt(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text)


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
            self._conn = self._memory()
            self._init_meta(self._conn, next_seq=1)
        else:
            try:
                self._conn = self._open()
            except StorageError as exc:
                # A folder the user may not write is the operator's to fix (``edge check`` says so);
                # a full disk or an I/O error is not: count on, in memory.
                if not os.access(self.path.parent, os.W_OK | os.X_OK):
                    raise
                self._conn = self._read_only()
                self._to_memory(exc.__cause__ or exc)
        self.stream: str = self._get("stream")
        for notice in self.notices:
            log.warning("%s", notice)

    # ------------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(_explain(self.path, exc)) from exc
        fresh = not self.path.exists()
        try:
            conn = _open_file(self.path)
        except sqlite3.DatabaseError as exc:
            if not _corrupt(exc):
                raise StorageError(_explain(self.path, exc)) from exc
            aside = self._move_aside()
            self.notices.append(
                f"state file {self.path} is corrupt ({exc}); moved aside to {aside.name}: its unsent "
                "windows are not delivered, a new stream starts"
            )
            fresh = True
            try:
                conn = _open_file(self.path)
            except sqlite3.Error as again:
                raise StorageError(_explain(self.path, again)) from again
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
            raise StorageError(_explain(self.path, exc)) from exc
        # The bound may have been lowered since the last run: apply it now, not at the next window.
        with self._transaction(conn) as c:
            self._evict(c)
        return conn

    def _read_only(self) -> sqlite3.Connection:
        """The database opened for reading only (to carry its unsent windows into memory), or an
        empty one in memory when even that fails."""
        # Read-only needs the WAL index; where it cannot be made (a full or read-only disk), read
        # the main file as it is (what the WAL holds beyond it is not seen).
        for options in ("mode=ro", "immutable=1"):
            try:
                conn = sqlite3.connect(f"file:{self.path}?{options}", uri=True, check_same_thread=False)
                conn.execute("SELECT value FROM meta WHERE key = 'stream'").fetchone()
                return conn
            except sqlite3.Error:
                continue
        return self._memory()

    @staticmethod
    def _memory() -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        for statement in _SCHEMA:
            conn.execute(statement)
        return conn

    @staticmethod
    def _init_meta(c: sqlite3.Connection, next_seq: int) -> None:
        defaults = {"stream": str(uuid.uuid4()), "next": str(next_seq), "evicted": "0"}
        for key, value in defaults.items():
            c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _move_aside(self) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        return aside

    def _migrate(self, c: sqlite3.Connection) -> None:
        """Take over the numbering, day total, checkpoint and unsent windows of the two files that
        held them before (``seq.sqlite3``, ``spool.sqlite3``), then rename those ``*.migrated``."""
        seq_file, spool_file = (self.path.with_name(n) for n in LEGACY_FILES)
        if not seq_file.exists():
            return
        old = sqlite3.connect(seq_file, isolation_level=None)
        try:
            state = dict(old.execute("SELECT key, value FROM seq_state").fetchall())
            text = dict(old.execute("SELECT key, value FROM text_state").fetchall())
        finally:
            old.close()
        next_seq = int(state.get("next", 1))
        moved = 0
        if spool_file.exists():
            old = sqlite3.connect(spool_file, isolation_level=None)
            try:
                for seq, payload, stored_at in old.execute("SELECT seq, payload, stored_at FROM windows ORDER BY seq"):
                    stream = json.loads(payload).get("stream") or text.get("stream", "")
                    c.execute("INSERT OR REPLACE INTO spool VALUES (?, ?, ?, ?)", (seq, stream, payload, stored_at))
                    next_seq = max(next_seq, seq + 1)
                    moved += 1
            finally:
                old.close()
        self._set(c, "stream", text.get("stream") or self._get(c=c, key="stream"))
        self._set(c, "next", str(next_seq))
        if "checkpoint" in text:
            self._set(c, "checkpoint", text["checkpoint"])
        if "day" in text:
            day = json.loads(text["day"])
            c.execute("INSERT OR REPLACE INTO days VALUES (?, ?)", (day["date"], int(day["visitors"])))
        for name in (seq_file, spool_file):
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{name}{suffix}", f"{name}{suffix}.migrated")
        self._write_mark(c)
        self.notices.append(
            f"moved the state of {seq_file.name} and {spool_file.name} into {self.path.name} "
            f"({moved} unsent window(s), next seq {next_seq}); the old files are kept as *.migrated"
        )

    def _check_continuity(self, c: sqlite3.Connection) -> None:
        """Compare the database with its mark; on any doubt start a new stream (see the module)."""
        stream, next_seq = self._get(c=c, key="stream"), int(self._get(c=c, key="next"))
        mark = self._read_mark()
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
        self.stream = stream
        return stream

    def _read_mark(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.mark_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("state mark %s cannot be read (%s): taken as missing", self.mark_path, exc)
            return None
        return value if isinstance(value, dict) else None

    def _write_mark(self, c: sqlite3.Connection) -> None:
        """Mirror the highest seq taken and the day totals into the mark (after the commit that
        took them; a mark behind its database by a crash in between is harmless)."""
        if not self._durable:
            return
        days = dict(c.execute("SELECT date, visitors FROM days").fetchall())
        mark = {"stream": self._get(c=c, key="stream"), "seq": int(self._get(c=c, key="next")) - 1, "days": days}
        tmp = self.mark_path.with_name(self.mark_path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(mark))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.mark_path)
        dir_fd = os.open(self.mark_path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

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
        disk, memory = self._conn, self._memory()
        copied = 0
        next_seq = 1
        old = getattr(self, "stream", None)
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
        self.stream = self._get(c=memory, key="stream")
        self.failure = f"state file {self.path} cannot be written: {getattr(exc, 'strerror', None) or exc}"
        log.error(
            "%s; windows are kept and delivered from memory under a new stream %s (was %s; %d unsent window(s) "
            "carried over): what is not delivered when this process ends is lost",
            self.failure,
            self.stream,
            old,
            copied,
        )

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
        self.stream = payload["stream"]
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
