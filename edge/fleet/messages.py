"""What arrives from the broker, parsed into small frozen records before it reaches the database.

A window that does not parse is not dropped: it becomes a ``Rejected`` with the
reason, stored and acknowledged like a window, so a bad device cannot stall the
collector (an unacknowledged message would be redelivered for ever) and an
operator can see what it sent.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

BREAKDOWNS = ("gender", "age", "expression", "ethnicity")


@dataclass(frozen=True)
class Incoming:
    """One MQTT message as paho delivered it; ``generation`` is the connection it came on (a
    PUBACK for it is only valid on that connection)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int


@dataclass(frozen=True)
class WindowRow:
    """A valid window payload with the typed columns the views use."""

    device: str
    stream: str
    seq: int
    site: str
    start: datetime
    end: datetime
    partial: bool
    observed_s: float
    visitors: int | None
    faces_peak: int | None
    dwell_n: int | None
    dwell_mean: float | None
    dwell_p50: float | None
    dwell_p90: float | None
    payload: str  # the JSON text as published
    topic: str
    cells: tuple[int, ...]  # the published (non-null) breakdown cells, every attribute

    def below_min_cell(self, k: int) -> bool:
        """A count of 1..k-1 published: the device runs with a smaller min_cell than the fleet."""
        counts = (self.visitors, self.faces_peak, self.dwell_n, *self.cells)
        return any(c is not None and 1 <= c < k for c in counts)


@dataclass(frozen=True)
class Rejected:
    topic: str
    reason: str
    payload: bytes


@dataclass(frozen=True)
class DeviceStatus:
    """A device's retained ``status`` (online/offline) or ``health`` message."""

    device: str
    status: str | None = None
    health: str | None = None  # JSON text
    site: str | None = None


class _Bad(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Python accepts them; PostgreSQL's jsonb does not)."""
    raise ValueError(f"{name} is not a JSON number")


def _int(doc: dict[str, Any], key: str, *, nullable: bool) -> int | None:
    v = doc.get(key)
    if v is None and nullable:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise _Bad(f"{key} is {v!r}, expected a count >= 0" + (" or null" if nullable else ""))
    return v


def _num(doc: dict[str, Any], key: str) -> float | None:
    v = doc.get(key)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise _Bad(f"{key} is {v!r}, expected a number >= 0 or null")
    return float(v)


def _time(text: Any, key: str) -> datetime:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise _Bad(f"window.{key} is {text!r}, expected a UTC time like 2026-01-01T12:00:00Z")
    try:
        return datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError as exc:
        raise _Bad(f"window.{key} is {text!r}, expected a UTC time like 2026-01-01T12:00:00Z") from exc


def parse_window(topic: str, payload: bytes) -> WindowRow | Rejected:
    """A schema-2 window (``edge/schemas/window.schema.json``), or why it is not one."""
    try:
        text = payload.decode("utf-8")
        doc = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        return Rejected(topic, f"not JSON: {exc}", payload)
    try:
        if not isinstance(doc, dict):
            raise _Bad("not a JSON object")
        if doc.get("schema") != 2:
            raise _Bad(f"schema is {doc.get('schema')!r}, this collector reads schema 2")
        device, stream, site = doc.get("device"), doc.get("stream"), doc.get("site")
        if not isinstance(device, str) or not device:
            raise _Bad(f"device is {device!r}, expected the device id")
        if not isinstance(site, str):
            raise _Bad(f"site is {site!r}, expected a text")
        try:
            stream = str(uuid.UUID(str(stream)))
        except ValueError as exc:
            raise _Bad(f"stream is {stream!r}, expected a UUID") from exc
        seq = _int(doc, "seq", nullable=False)
        if not seq:
            raise _Bad("seq is 0, expected >= 1")
        window = doc.get("window")
        if not isinstance(window, dict) or not isinstance(window.get("partial"), bool):
            raise _Bad(f"window is {window!r}, expected start, end and partial")
        observed = _num(doc, "observed_s")
        if observed is None:
            raise _Bad("observed_s is missing")
        faces = doc.get("faces") or {}
        dwell = doc.get("dwell_s") or {}
        if not isinstance(faces, dict) or not isinstance(dwell, dict):
            raise _Bad("faces and dwell_s must be objects")
        for name in BREAKDOWNS:
            cells = doc.get(name)
            if cells is not None and not (
                isinstance(cells, dict)
                and all(
                    c is None or (isinstance(c, int) and not isinstance(c, bool) and c >= 0) for c in cells.values()
                )
            ):
                raise _Bad(f"{name} is {cells!r}, expected cells of counts >= 0 or null")
        return WindowRow(
            device=device,
            stream=stream,
            seq=seq,
            site=site,
            start=_time(window.get("start"), "start"),
            end=_time(window.get("end"), "end"),
            partial=window["partial"],
            observed_s=observed,
            visitors=_int(doc, "visitors", nullable=True),
            faces_peak=_int(faces, "peak", nullable=True),
            dwell_n=_int(dwell, "n", nullable=True),
            dwell_mean=_num(dwell, "mean"),
            dwell_p50=_num(dwell, "p50"),
            dwell_p90=_num(dwell, "p90"),
            payload=text,
            topic=topic,
            cells=tuple(c for name in BREAKDOWNS for c in (doc.get(name) or {}).values() if c is not None),
        )
    except _Bad as exc:
        return Rejected(topic, str(exc), payload)


def device_of(topic: str, topic_filter: str) -> str | None:
    """The level of ``topic`` where ``topic_filter`` has its ``+`` (None if it does not match)."""
    levels, pattern = topic.split("/"), topic_filter.split("/")
    if len(levels) != len(pattern):
        return None
    device = None
    for got, want in zip(levels, pattern):
        if want == "+":
            device = got
        elif got != want:
            return None
    return device or None
