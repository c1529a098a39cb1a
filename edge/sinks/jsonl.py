"""A JSON-lines sink: one window per line, for debugging and for piping into other tools.

With a spool (the daemon's state store) a window is written, flushed (and fsynced for a file),
then acknowledged: a window the file could not take (a full or failed disk) stays spooled and is
written before the next one, so the file keeps every window once, in order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from edge.checks import Finding, Options, writable_target
from edge.config.fields import Check, Ctx, leaf, resolve
from edge.plugins import Plugin
from edge.sinks.base import Sink, SinkConfig, SinkContext, SinkError, dumps
from edge.state_store import StateStore
from edge.window import Window

log = logging.getLogger(__name__)


def _jsonl_path(v: Any, ctx: Ctx) -> str:
    return "-" if v == "-" else str(resolve(v, ctx))


@dataclass(frozen=True, kw_only=True)
class JsonlSinkConfig(SinkConfig):
    """One JSON object per line; ``path: "-"`` writes to stdout (journald under systemd)."""

    type: ClassVar[str] = "jsonl"
    path: str = leaf("-", Check('"-" for stdout or a file path', _jsonl_path))

    @property
    def to_stdout(self) -> bool:
        return self.path == "-"


class JsonlSink(Sink):
    """One JSON object per line, flushed per line so a tail or a pipe sees each window at once."""

    def __init__(
        self, config: JsonlSinkConfig | None = None, *, stream: IO[str] | None = None, spool: StateStore | None = None
    ) -> None:
        self.config = config or JsonlSinkConfig()
        self.spool = spool
        self._failing = False
        self._lock = threading.Lock()
        self._owned = False
        if stream is not None:
            self._stream: IO[str] = stream
        elif self.config.path == "-":
            self._stream = sys.stdout
        else:
            path = Path(self.config.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = path.open("a", encoding="utf-8")
            self._owned = True
        self._closed = False

    def publish_window(self, window: Window) -> None:
        with self._lock:
            if self._closed:
                raise SinkError("JsonlSink is closed")
            if self.spool is None:
                self._write(window.to_payload())
                return
            self.spool.put(window)
            for seq, spooled in self.spool.pending(limit=self.spool.max_windows):
                try:
                    self._write(spooled)
                except OSError as exc:
                    if not self._failing:
                        log.error(
                            "cannot write window %s to %s: %s; it stays spooled and is written before the next one",
                            seq,
                            self.config.path,
                            exc,
                        )
                    self._failing = True
                    return
                self.spool.ack(seq)
            if self._failing:
                log.warning("%s takes windows again", self.config.path)
                self._failing = False

    def _write(self, payload: Mapping[str, Any]) -> None:
        if not self._owned:
            self._stream.write(dumps(payload) + "\n")
            self._stream.flush()
            return
        end = self._stream.tell()
        try:
            self._stream.write(dumps(payload) + "\n")
            self._stream.flush()
            os.fsync(self._stream.fileno())
        except OSError:
            with contextlib.suppress(OSError):  # no half line left for the retry to follow
                self._stream.truncate(end)
            raise

    def publish_health(self, health: Mapping[str, Any]) -> None:
        """Not written: the stream is a pure window log that consumers parse line by line."""
        log.debug("health: %s", dumps(health))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._owned:
                self._stream.close()
            else:
                self._stream.flush()


def check(cfg: JsonlSinkConfig, key: str, options: Options) -> Iterator[Finding]:
    if not cfg.to_stdout:
        problem = writable_target(f"{key}.path", Path(cfg.path), '"-" or a file path the sink can append to')
        if problem is not None:
            yield problem


def build(config: JsonlSinkConfig, context: SinkContext, store: StateStore) -> JsonlSink:
    return JsonlSink(config, spool=store)


PLUGIN = Plugin(config=JsonlSinkConfig, build=build, check=check)
