"""A JSON-lines sink: one window per line, for debugging and for piping into other tools."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from edge.sinks.base import Sink, SinkError, dumps

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class JsonlSettings:
    """``path``: a file to append to, or ``"-"`` for stdout (the journal under systemd)."""

    path: str = "-"


class JsonlSink(Sink):
    """One JSON object per line, flushed per line so a tail or a pipe sees each window at once."""

    type_name: ClassVar[str] = "jsonl"

    def __init__(self, settings: JsonlSettings | None = None, *, stream: IO[str] | None = None) -> None:
        self.settings = settings or JsonlSettings()
        self._lock = threading.Lock()
        self._owned = False
        if stream is not None:
            self._stream: IO[str] = stream
        elif self.settings.path == "-":
            self._stream = sys.stdout
        else:
            path = Path(self.settings.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = path.open("a", encoding="utf-8")
            self._owned = True
        self._closed = False

    def publish_window(self, payload: Mapping[str, Any]) -> None:
        line = dumps(payload) + "\n"
        with self._lock:
            if self._closed:
                raise SinkError("JsonlSink is closed")
            self._stream.write(line)
            self._stream.flush()

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
