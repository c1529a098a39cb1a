"""The state store's files: opening its SQLite database (a corrupt file moved aside, a full disk
opened for this process alone), reading it when it can no longer be written, the continuity mark
written beside it, and the two files earlier releases kept (``edge.state_store`` uses these)."""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_BUSY_TIMEOUT_MS = 10_000  # another process (a previous instance) may still hold the file briefly
LEGACY_FILES = ("seq.sqlite3", "spool.sqlite3")  # before one store held everything
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS spool ("
    " seq INTEGER PRIMARY KEY, stream TEXT NOT NULL, payload TEXT NOT NULL, stored_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS days (date TEXT PRIMARY KEY, visitors INTEGER NOT NULL)",
)


class StorageError(RuntimeError):
    """The state store cannot be opened or set up; the message names the file and the likely cause."""


def explain(path: Path, exc: BaseException) -> str:
    """``exc`` on ``path`` with what the operator can do about it."""
    folder = path.parent
    text = f"state file {path} cannot be opened: {getattr(exc, 'strerror', None) or exc}"
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        return f"{text} (the folder {folder} is not writable for user {getpass.getuser()!r})"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"{text} (the file is not readable and writable for user {getpass.getuser()!r})"
    return f"{text} (the disk holding {folder} is full)" if disk_full(folder) else text


def disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 256 * 1024
    except OSError:
        return False


def corrupt(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text)


def _configure(conn: sqlite3.Connection, exclusive: bool) -> None:
    conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    if exclusive:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() not in ("wal", "memory"):
        log.warning("SQLite does not support WAL here (journal_mode=%s); durability is unchanged but slower", mode)
    # FULL: a COMMIT returns only after the WAL is fsynced, so a power cut cannot lose it.
    conn.execute("PRAGMA synchronous=FULL")
    for statement in SCHEMA:
        conn.execute(statement)


def open_file(path: Path) -> sqlite3.Connection:
    """The database at ``path``, in autocommit mode (the store says where each transaction ends).

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
            if corrupt(exc) or not disk_full(path.parent):
                raise
            log.warning("%s; opening it for this process alone, which needs no new file", explain(path, exc))
            last = exc
    assert last is not None
    raise last


def memory() -> sqlite3.Connection:
    """An empty store in memory (where windows go when the file cannot be written)."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    for statement in SCHEMA:
        conn.execute(statement)
    return conn


def read_only(path: Path) -> sqlite3.Connection:
    """The database opened for reading only (to carry its unsent windows into memory), or an empty
    one in memory when even that fails."""
    # Read-only needs the WAL index; where it cannot be made (a full or read-only disk), read the
    # main file as it is (what the WAL holds beyond it is not seen).
    for options in ("mode=ro", "immutable=1"):
        try:
            conn = sqlite3.connect(f"file:{path}?{options}", uri=True, check_same_thread=False)
            conn.execute("SELECT value FROM meta WHERE key = 'stream'").fetchone()
            return conn
        except sqlite3.Error:
            continue
    return memory()


def move_aside(path: Path) -> Path:
    """Rename a corrupt database (with its WAL and index) to ``<name>.corrupt-<UTC time>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    return aside


def read_mark(path: Path) -> dict[str, Any] | None:
    """The continuity mark (stream, highest seq, day totals), or None when missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("state mark %s cannot be read (%s): taken as missing", path, exc)
        return None
    return value if isinstance(value, dict) else None


def write_mark(path: Path, mark: Mapping[str, Any]) -> None:
    """Replace the mark durably: written, fsynced, renamed, the folder fsynced."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(mark))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass
class Legacy:
    """What the two files of earlier releases held."""

    stream: str | None = None
    next_seq: int = 1
    checkpoint: str | None = None
    day: tuple[str, int] | None = None
    windows: list[tuple[int, str, str, float]] = field(default_factory=list)  # seq, stream, payload, stored_at


def read_legacy(folder: Path) -> Legacy | None:
    """The state of ``seq.sqlite3`` and ``spool.sqlite3`` in ``folder``; None when there is none."""
    seq_file, spool_file = (folder / n for n in LEGACY_FILES)
    if not seq_file.exists():
        return None
    old = sqlite3.connect(seq_file, isolation_level=None)
    try:
        state = dict(old.execute("SELECT key, value FROM seq_state").fetchall())
        text = dict(old.execute("SELECT key, value FROM text_state").fetchall())
    finally:
        old.close()
    legacy = Legacy(stream=text.get("stream"), next_seq=int(state.get("next", 1)), checkpoint=text.get("checkpoint"))
    if "day" in text:
        day = json.loads(text["day"])
        legacy.day = (str(day["date"]), int(day["visitors"]))
    if spool_file.exists():
        old = sqlite3.connect(spool_file, isolation_level=None)
        try:
            for seq, payload, stored_at in old.execute("SELECT seq, payload, stored_at FROM windows ORDER BY seq"):
                stream = json.loads(payload).get("stream") or legacy.stream or ""
                legacy.windows.append((int(seq), stream, payload, float(stored_at)))
                legacy.next_seq = max(legacy.next_seq, int(seq) + 1)
        finally:
            old.close()
    return legacy


def retire_legacy(folder: Path) -> None:
    """Rename the old files ``*.migrated`` once their state is in the store."""
    for name in LEGACY_FILES:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(folder / f"{name}{suffix}", folder / f"{name}{suffix}.migrated")
