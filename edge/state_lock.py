"""One daemon per state directory.

Two daemons sharing a state directory would number and publish every window
twice (double counting under different seqs) and take each other's MQTT client
id in turns. An advisory ``flock`` on a file in the directory prevents that;
the kernel releases it when the process ends however it ends (SIGKILL, power
loss), so a stale lock never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class StateDirBusy(RuntimeError):
    """Another process holds the state directory."""


class StateLock:
    """Hold ``<state_dir>/daemon.lock`` for the life of the daemon (a context manager)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "daemon.lock"
        self._fd: int | None = None
        self.holder: str | None = None  # the pid written by the process that holds the lock, once refused

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateDirBusy(f"state directory lock {self.path} cannot be opened: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            self.holder = holder
            raise StateDirBusy(
                f"state directory {self.path.parent} is in use by another edge daemon (pid {holder}); "
                "give each daemon its own state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
