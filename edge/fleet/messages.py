"""What arrives from the broker, checked at the door and parsed into small frozen records before
it reaches the database.

Every message is hostile until it passes: its size, its JSON (finite numbers, valid UTF-8 text
without NUL, no text longer than ``MAX_TEXT_CHARS``), the JSON Schema the project ships for its kind
(``edge/schemas``), the ranges of the database's columns, and the device its topic names. A message
that fails is not dropped: it becomes a ``Rejected`` with the reason, stored and acknowledged like a
window, so a bad device cannot stall the collector (an unacknowledged message would be redelivered
for ever) and an operator can see what it sent.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import fastjsonschema

from edge.people_config import MAX_ZONES
from edge.window import BREAKDOWNS, VIEWER_BREAKDOWNS, Window

# A window with every attribute and a dozen age brackets is under 2 KB, a health message under 1.5 KB.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TEXT_CHARS = 256  # any text in a message: a site name, a cell label, a version
MAX_COUNT = 2**31 - 1  # the integer columns (visitors, dwell_n, cells)
MAX_SEQ = 2**63 - 1  # bigint
STATUSES = ("online", "offline")
SCHEMAS = (2, 3, 4)  # window payload versions this collector reads (3 adds attention, 4 people)
# A window measures attention with all four keys or with none (schema 2, or attention off).
ATTENTION_KEYS = ("viewers", "viewer_rate", "attention_s", "viewers_by")
# A window counts people with all four keys or with none (schema 2 or 3, or people off); crossings
# (a counting line) and zones come only beside them, each where the device has it configured.
PEOPLE_KEYS = ("people", "people_with_face", "passers_by", "stayers")
PEOPLE_EXTRAS = ("crossings", "zones")


@dataclass(frozen=True)
class Incoming:
    """One MQTT message as paho delivered it; ``generation`` is the connection it came on (a
    PUBACK for it is only valid on that connection)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    retained: bool = False  # a retained message the broker replays on subscribe: old news


@dataclass(frozen=True)
class WindowRow:
    """A valid window as received: the typed window, its times parsed, the JSON text as published."""

    window: Window  # numbered: stream, seq and today are set
    start: datetime
    end: datetime
    payload: str  # the JSON text as published
    topic: str

    def below_min_cell(self, k: int) -> bool:
        """A count of 1..k-1 published: the device runs with a smaller min_cell than the fleet."""
        w = self.window
        cells = [c for breakdown in w.breakdowns.values() for c in breakdown.values()]
        a = w.attention
        if a is not None:
            cells += [c for breakdown in a.by.values() for c in breakdown.values()]
            if a.viewers is not None and w.dwell.n is not None:
                cells += [a.viewers, w.dwell.n - a.viewers]  # viewers and those who did not look
        p = w.people
        if p is not None:
            cells += [
                p.n,
                p.with_face,
                p.passers_by,
                p.stayers,
                *(p.crossings or ()),
                *(z.peak for z in p.zones.values()),
            ]
            if p.n is not None and p.with_face is not None:
                cells.append(p.n - p.with_face)  # the people whose face was not seen
        counts = (w.visitors, w.faces.peak, w.dwell.n, *cells)
        return any(c is not None and 1 <= c < k for c in counts)


# Why a message was rejected, in a word: the collector counts rejections by these (its health).
REJECTION_KINDS = ("size", "json", "text", "schema", "range", "device", "status", "topic", "database")


@dataclass(frozen=True)
class Rejected:
    topic: str
    reason: str
    payload: bytes
    kind: str = "schema"  # one of REJECTION_KINDS


@dataclass(frozen=True)
class DeviceStatus:
    """A device's retained ``status`` (online/offline) or ``health`` message."""

    device: str
    status: str | None = None
    health: str | None = None  # JSON text
    site: str | None = None
    topic: str = ""  # where it came from, and as it came: kept if the database refuses it
    payload: bytes = b""
    # When the device said it (its health's own ``ts``); None for a status, which carries no time.
    at: datetime | None = None
    # A status heard live (not a retained one replayed on subscribe): the device is there now.
    live: bool = False


class _Bad(ValueError):
    def __init__(self, reason: str, kind: str = "schema") -> None:
        super().__init__(reason)
        self.kind = kind


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Python accepts them; PostgreSQL's jsonb does not)."""
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    """A JSON number as a float, refused where it does not fit one (1e400 would be infinity)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is not a finite number")
    return value


def _int64(text: str) -> int:
    """A JSON integer, refused beyond 64 bits: no field of a message holds one, and a larger one
    would overflow the float or bigint it is stored as."""
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{text[:20]}... is an integer beyond 64 bits")
    return value


def _texts(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every text in a JSON document, keys included, with where it is."""
    if isinstance(value, str):
        yield path or "(the message)", value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}.{k}" if path else k, k
            yield from _texts(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _texts(v, f"{path}[{i}]")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _load(payload: bytes) -> Any:
    """The payload's JSON, or ``_Bad`` saying why it is not a message the database can hold."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise _Bad(f"{len(payload)} bytes, over the {MAX_MESSAGE_BYTES} a message may have", "size")
    try:
        doc = json.loads(
            payload.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite, parse_int=_int64
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise _Bad(f"not JSON: {exc}", "json") from exc
    for where, text in _texts(doc):
        if len(text) > MAX_TEXT_CHARS:
            raise _Bad(f"{where} is a text of {len(text)} characters, at most {MAX_TEXT_CHARS} are taken", "text")
        if "\x00" in text:
            raise _Bad(f"{where} holds a NUL character", "text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800": not Unicode text
            raise _Bad(f"{where} is not valid Unicode text ({exc.reason})", "text") from exc
    return doc


# The shipped schemas compiled to Python (fastjsonschema: 17 us a window, where the reference
# validator, jsonschema, takes 320 us: a collector's whole budget at 3,000 messages a second). They
# use only keywords both implement alike; tests/faults/test_fleet_fuzz.py holds the two to the same
# verdicts. Formats are not checked here (as jsonschema does by default): times and UUIDs are parsed.
_ANY_FORMAT = {"uuid": lambda _: True, "date-time": lambda _: True, "date": lambda _: True}


@functools.cache
def validator(name: str) -> Callable[[Any], Any]:
    """The shipped JSON Schema ``edge/schemas/<name>`` as a function that raises
    ``fastjsonschema.JsonSchemaException`` on a document it refuses."""
    schema = json.loads((importlib.resources.files("edge") / "schemas" / name).read_text())
    schema.pop("$id", None)  # a relative id would send its local $refs to a resolver of URLs
    return fastjsonschema.compile(schema, handlers={}, formats=_ANY_FORMAT)


def _conform(doc: Any, schema: str) -> None:
    """``_Bad`` with the first violation of the shipped JSON Schema, if any."""
    try:
        validator(schema)(doc)
    except fastjsonschema.JsonSchemaException as exc:
        message = str(getattr(exc, "message", exc))
        message = "the message" + message[4:] if message.startswith("data ") else message.removeprefix("data.")
        raise _Bad(message[:300]) from exc


def _own(doc: dict[str, Any], topic_device: str) -> None:
    """A device speaks only for itself: the payload's device must be the one its topic names."""
    if doc.get("device") != topic_device:
        raise _Bad(f"device is {_short(doc.get('device'))} but the topic is {topic_device!r}'s", "device")


def _int(doc: dict[str, Any], key: str, *, nullable: bool, most: int = MAX_COUNT, where: str = "") -> int | None:
    v = doc.get(key)
    if v is None and nullable:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= most:
        raise _Bad(
            f"{where}{key} is {_short(v)}, expected a count from 0 to {most}" + (" or null" if nullable else ""),
            "range",
        )
    return v


def _num(doc: dict[str, Any], key: str) -> float | None:
    v = doc.get(key)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise _Bad(f"{key} is {v!r}, expected a number >= 0 or null")
    return float(v)


def _time(text: Any, key: str, where: str = "window") -> datetime:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise _Bad(f"{where}.{key} is {_short(text)}, expected a UTC time like 2026-01-01T12:00:00Z")
    try:
        return datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError as exc:
        raise _Bad(f"{where}.{key} is {_short(text)}, expected a UTC time like 2026-01-01T12:00:00Z") from exc


def _attention(doc: dict[str, Any]) -> None:
    """``_Bad`` unless the window's attention keys are all there or all absent (schema 3), and
    its viewers are a part of its published ended visitors: the roll-ups subtract one from the other."""
    present = [key for key in ATTENTION_KEYS if key in doc]
    if not present:
        return
    if doc["schema"] < 3:
        raise _Bad(f"{present[0]} is a schema 3 key, the window says schema {doc['schema']}")
    if len(present) < len(ATTENTION_KEYS):
        missing = next(key for key in ATTENTION_KEYS if key not in doc)
        raise _Bad(f"{present[0]} without {missing}: a window carries all of {', '.join(ATTENTION_KEYS)} or none")
    viewers, n = _int(doc, "viewers", nullable=True), doc["dwell_s"]["n"]
    if viewers is not None and (n is None or viewers > n):
        raise _Bad(f"viewers is {viewers}, more than the published dwell_s.n ({_short(n)})", "range")
    cells = [c for name in VIEWER_BREAKDOWNS for c in (doc["viewers_by"].get(name) or {}).values() if c is not None]
    if any(c > MAX_COUNT for c in cells):
        raise _Bad(f"a viewers_by cell is over {MAX_COUNT}", "range")


def _people(doc: dict[str, Any]) -> None:
    """``_Bad`` unless the window's people keys are all there or all absent (schema 4), crossings
    and zones only beside them, and its parts add up as the device's k-rule leaves them: with a face
    at most ``people``, ``passers_by + stayers == people``, a part null with ``people``, passers-by
    and stayers published or hidden together, a zone's peak and mean too (``edge.people_cells``)."""
    present = [key for key in (*PEOPLE_KEYS, *PEOPLE_EXTRAS) if key in doc]
    if not present:
        return
    if doc["schema"] < 4:
        raise _Bad(f"{present[0]} is a schema 4 key, the window says schema {doc['schema']}")
    if len([key for key in present if key in PEOPLE_KEYS]) < len(PEOPLE_KEYS):
        missing = next(key for key in PEOPLE_KEYS if key not in doc)
        raise _Bad(
            f"{present[0]} without {missing}: a window carries all of {', '.join(PEOPLE_KEYS)} or none"
            f" ({' and '.join(PEOPLE_EXTRAS)} only beside them)"
        )
    people, face, passers, stayers = (_int(doc, key, nullable=True) for key in PEOPLE_KEYS)
    parts = {"people_with_face": face, "passers_by": passers, "stayers": stayers}
    if people is None and any(v is not None for v in parts.values()):
        key = next(k for k, v in parts.items() if v is not None)
        raise _Bad(f"{key} is {parts[key]} but people is null: a device hides the parts with the whole", "range")
    if face is not None and people is not None and face > people:
        raise _Bad(f"people_with_face is {face}, more than people ({people})", "range")
    if (passers is None) != (stayers is None):
        raise _Bad(f"passers_by is {passers} and stayers {stayers}: a device publishes or hides both", "range")
    if passers is not None and stayers is not None and passers + stayers != people:
        raise _Bad(f"passers_by + stayers is {passers + stayers}, not people ({people})", "range")
    for way in ("in", "out") if "crossings" in doc else ():
        _int(doc["crossings"], way, nullable=True, where="crossings.")
    zones = doc.get("zones", {})
    if len(zones) > MAX_ZONES:
        raise _Bad(f"zones has {len(zones)} zones, a device has at most {MAX_ZONES}")
    for name, zone in zones.items():
        peak, mean = _int(zone, "peak", nullable=True, where=f"zones.{name}."), zone["mean"]
        if (peak is None) != (mean is None):
            raise _Bad(f"zones.{name} has peak {peak} and mean {mean}: a device publishes or hides both", "range")
        if peak is not None and mean > peak:
            raise _Bad(f"zones.{name}.mean is {mean}, more than its peak ({peak})", "range")


def parse_window(topic: str, payload: bytes, topic_device: str) -> WindowRow | Rejected:
    """A window (``edge/schemas/window.schema.json``: schema 2, 3 with attention, 4 with people) of
    the device its topic names, or why it is not one."""
    try:
        doc = _load(payload)
        if isinstance(doc, dict) and doc.get("schema") not in SCHEMAS:
            raise _Bad(f"schema is {_short(doc.get('schema'))}, this collector reads schema 2, 3 and 4")
        _conform(doc, "window.schema.json")
        _own(doc, topic_device)
        try:
            stream = str(uuid.UUID(doc["stream"]))
        except ValueError as exc:
            raise _Bad(f"stream is {_short(doc['stream'])}, expected a UUID") from exc
        cells = [c for name in BREAKDOWNS for c in (doc.get(name) or {}).values() if c is not None]
        if any(c > MAX_COUNT for c in cells):
            raise _Bad(f"a breakdown cell is over {MAX_COUNT}", "range")
        # Ranges the schema does not bound, in the order a reader checks them.
        _int(doc["today"], "visitors", nullable=False)
        _int(doc, "seq", nullable=False, most=MAX_SEQ)
        start, end = _time(doc["window"]["start"], "start"), _time(doc["window"]["end"], "end")
        _int(doc, "visitors", nullable=True)
        _int(doc["faces"], "peak", nullable=True)
        _int(doc["dwell_s"], "n", nullable=True)
        for key in ("mean", "p50", "p90"):
            _num(doc["dwell_s"], key)
        _attention(doc)
        _people(doc)
        return WindowRow(
            window=Window.from_payload({**doc, "stream": stream}),
            start=start,
            end=end,
            payload=payload.decode("utf-8"),
            topic=topic,
        )
    except _Bad as exc:
        return Rejected(topic, str(exc), payload, exc.kind)


def parse_health(topic: str, payload: bytes, topic_device: str) -> DeviceStatus | Rejected:
    """A device's health message (``edge/schemas/health.schema.json``), or why it is not one."""
    try:
        doc = _load(payload)
        _conform(doc, "health.schema.json")
        _own(doc, topic_device)
        at = _time(doc["ts"], "ts", "health")
        return DeviceStatus(topic_device, health=json.dumps(doc), topic=topic, payload=payload, at=at)
    except _Bad as exc:
        return Rejected(topic, str(exc), payload, exc.kind)


def parse_status(topic: str, payload: bytes, topic_device: str, retained: bool = False) -> DeviceStatus | Rejected:
    """A device's retained status: ``online`` or ``offline`` (its Last Will), nothing else. It
    carries no time: heard live it means now; replayed as a retained message on subscribe it says
    only what the device last said, at a time its windows and health tell."""
    text = payload.decode("utf-8", "replace")
    if text not in STATUSES:
        reason = f"status is {_short(text)}, expected one of {', '.join(STATUSES)}"
        return Rejected(topic, reason, payload, "status")
    return DeviceStatus(topic_device, status=text, topic=topic, payload=payload, live=not retained)


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
