"""Findings: what ``edge check`` reports about a config, and the probes every plugin's check shares.

A source or sink plugin checks its own settings (``check`` in its file); this module gives them
one shape of message (``expected X, got VALUE (why); fix``, like ``ConfigError``) and the
side-effect-free probes they need: a file that must be readable or writable, a TCP port that
must answer. Levels: what would certainly stop ``edge run`` is an ``error``; what may be
transient or depend on the user running the check is a ``warning``.
"""

from __future__ import annotations

import getpass
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Level = Literal["error", "warning"]
DEFAULT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Finding:
    """One problem: its ``level``, the config ``key`` path and a message with value, expectation and fix."""

    level: Level
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


@dataclass(frozen=True)
class Options:
    """Knobs shared by all checks."""

    timeout_s: float = DEFAULT_TIMEOUT_S  # per network probe (name lookup + TCP connect)


def show(value: Any) -> str:
    return repr(str(value)) if isinstance(value, Path) else repr(value)


def finding(level: Level, key: str, value: Any, expected: str, why: str, fix: str = "") -> Finding:
    """``expected X, got VALUE (why)[; fix]`` -- the shape of ``ConfigError`` messages."""
    return Finding(level, key, f"expected {expected}, got {show(value)} ({why})" + (f"; {fix}" if fix else ""))


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid {os.getuid()}"


def denied(key: str, path: Path | str, need: str) -> Finding:
    return finding(
        "warning",
        key,
        path,
        f"a file {need} by the service",
        f"not {need} by user {user()}",
        "fine if the service runs as a user who may; otherwise fix the owner or mode",
    )


def existing_file(key: str, path: Path, expected: str) -> Finding | None:
    """None if ``path`` is a readable regular file, else what is wrong with it."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return finding("error", key, path, expected, "no such file")
    except PermissionError:
        return denied(key, path, "readable")
    except OSError as exc:
        return finding("error", key, path, expected, exc.strerror or str(exc))
    if stat.S_ISDIR(st.st_mode):
        return finding("error", key, path, expected, "a folder")
    if not stat.S_ISREG(st.st_mode):
        return finding("error", key, path, expected, "not a regular file")
    if not os.access(path, os.R_OK):
        return denied(key, path, "readable")
    return None


def _lookup(host: str, port: int, timeout_s: float) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` with a deadline (it has none of its own; a dead resolver can take 30 s)."""
    box: list[list[tuple[Any, ...]] | OSError] = []

    def resolve() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            box.append(exc)

    worker = threading.Thread(target=resolve, name="preflight-dns", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not box:
        raise TimeoutError(f"no answer from the name resolver within {timeout_s:g} s")
    if isinstance(box[0], OSError):
        raise box[0]
    return box[0]


def unreachable(host: str, port: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """None if a TCP connection to ``host:port`` opens (then it is closed at once), else why not."""
    deadline = time.monotonic() + timeout_s
    try:
        addresses = _lookup(host, port, timeout_s)
    except socket.gaierror as exc:
        return f"the name does not resolve: {exc.strerror or exc}"
    except OSError as exc:  # TimeoutError from the resolver thread included
        return f"the name does not resolve: {exc}"
    last: OSError | None = None
    for family, kind, proto, _, address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(address)
            return None
        except OSError as exc:
            last = exc
    if isinstance(last, ConnectionRefusedError):
        return f"connection to port {port} refused: nothing listens there"
    if last is None or isinstance(last, TimeoutError):
        return f"no answer on port {port} within {timeout_s:g} s (host down or a firewall?)"
    return f"port {port}: {last.strerror or last}"


def writable_target(key: str, path: Path, expected: str) -> Finding | None:
    """None if ``path`` can be created or appended to (its folders are created by the sink)."""
    try:
        if path.is_dir():
            return finding("error", key, path, expected, "a folder")
        if path.exists():
            return None if os.access(path, os.W_OK) else denied(key, path, "writable")
        folder = next(p for p in path.parents if p.exists())
    except PermissionError:  # a folder on the way may not be searched by this user
        return denied(key, path, "writable")
    if not folder.is_dir():
        return finding("error", key, path, expected, f"{folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        return denied(key, folder, "writable")
    return None


Check = Callable[[Any, str, Options], Iterable[Finding]]
"""A plugin's check: ``check(section, key, options)`` yields findings about ``section`` found at ``key``."""
