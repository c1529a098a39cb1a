"""The sink interface: where finished windows and health reports go."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from edge.window import Window

_S = TypeVar("_S", bound="Sink")


@dataclass(frozen=True, kw_only=True)
class SinkConfig:
    """Base of the sink sections; ``type`` (the YAML ``type:``) names the plugin."""

    type: ClassVar[str]
    # Keys refused in every sink, with the reason as the expectation.
    _forbidden: ClassVar[dict[str, str]] = {}


@dataclass(frozen=True)
class SinkContext:
    """What a sink needs to know beyond its own section: who is publishing and what windows hold."""

    device_id: str
    version: str
    window_s: int | None = None  # window length: dashboards expire a value after two missed windows
    # Breakdown group -> the cells the config produces (dashboards get exactly those).
    cells: Mapping[str, tuple[str, ...]] | None = None
    # Windows carry viewers and attention time (``attention.enabled``): dashboards get those figures.
    attention: bool = False
    # Windows carry people counts (``people.enabled``); crossings where a counting line is set
    # (``people.line``), occupancy per zone (``people.zones``, these names): dashboards get exactly those.
    people: bool = False
    line: bool = False
    zones: tuple[str, ...] = ()


class SinkError(RuntimeError):
    """A sink cannot be set up as configured (missing password file, unreadable CA, ...)."""


class Sink(ABC):
    """Destination for window payloads and health reports."""

    @abstractmethod
    def publish_window(self, window: Window) -> None:
        """Deliver one finished, numbered window. In the
        daemon the state store has spooled it already: a sink built on that spool delivers from it,
        oldest first, and acknowledges what its consumer has (``StateStore.ack``)."""

    def publish_health(self, health: Mapping[str, Any]) -> None:
        """Report device health; sinks without a health channel ignore it."""
        return None

    @property
    def failure(self) -> str | None:
        """Why the sink can no longer deliver anything (a dead worker thread), or None while it works
        or honestly retries. The daemon then stops with a non-zero status so it is restarted."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Flush and release resources; idempotent."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def dumps(payload: Mapping[str, Any]) -> str:
    """Compact JSON; NaN/inf are errors, never silently invalid JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
