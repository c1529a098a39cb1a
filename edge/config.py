"""Typed configuration: one YAML file, validated once at start-up.

The device runs unattended, so a typo has to stop it at start-up with a message
that names the key, the bad value and what was expected -- not surface hours
later as a KeyError in a worker thread. Every problem in the file is collected
in one pass and reported together, so an operator fixes the file once.

The schema is the dataclasses below. Each field's metadata carries its
validator, so a new key is one field; a new source or sink type is one new
registered class (see ``SOURCE_TYPES``/``SINK_TYPES``), not an if-branch.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import yaml

from edge.attributes import DESCRIBE_MIN_FACE_PX, MIN_GENDER_SCORE
from edge.models import DEFAULT_DIR as DEFAULT_MODEL_DIR
from edge.preprocess import DEFAULT_VIEWS, VIEW_COUNTS

DEFAULT_STATE_DIR = Path("~/.local/state/edge")
_ROOT = "(top level)"


class _Missing:
    """Marks a key that is absent from the file (distinct from an explicit null)."""

    def __repr__(self) -> str:
        return "nothing"


_MISSING_KEY = _Missing()


_URL_SECRET = re.compile(r"(\w[\w+.-]*://[^/@\s:]*:)[^@\s]*@")


_RENDER_CHARS = 80


class _Oversized:
    """A YAML integer too long to be a setting (Python refuses to convert over 4,300 digits anyway)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"an integer of {self.digits} digits"


def _sketch(value: Any, budget: int) -> str:
    """``repr``-like text of ``value`` that stops after about ``budget`` characters.

    Never walks more of a structure than it prints, so an alias bomb or a 50 MB string in a
    config costs nothing to name in an error message.
    """
    if isinstance(value, str):
        return repr(value[: budget + 1])
    if isinstance(value, (dict, list, tuple)):
        items = value.items() if isinstance(value, dict) else value
        opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
        parts: list[str] = []
        used = 1
        for n, item in enumerate(items):
            if used >= budget:
                parts.append(f"... {len(value) - n} more")
                break
            if isinstance(value, dict):
                key, val = item
                text = f"{_sketch(key, budget - used)}: {_sketch(val, budget - used)}"
            else:
                text = _sketch(item, budget - used)
            parts.append(text)
            used += len(text) + 2
        return opening + ", ".join(parts) + closing
    return repr(value)


def _render(value: Any) -> str:
    if isinstance(value, _Missing):
        return "nothing (the key is required)"
    text = _URL_SECRET.sub(r"\1***@", _sketch(value, _RENDER_CHARS))  # never echo a password typed into a URL
    return text if len(text) <= _RENDER_CHARS else text[: _RENDER_CHARS - 3] + "..."


class ConfigError(ValueError):
    """A configuration problem (or several): key path, offending value, expectation.

    ``errors`` holds every problem found in the pass; ``str()`` lists them all.
    """

    def __init__(
        self,
        path: str,
        value: Any,
        expected: str,
        *,
        got: str | None = None,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(path)
        self.path = path
        self.value = value
        self.expected = expected
        self.got = got if got is not None else _render(value)
        self.source = source
        self.line = line
        self.column = column
        self.errors: tuple[ConfigError, ...] = (self,)

    def _where(self, with_source: bool) -> str:
        named = with_source and self.source not in (None, "<dict>")
        if self.line is not None:
            at = f"line {self.line}" + (f", column {self.column}" if self.column is not None else "")
            return f" ({self.source}, {at})" if named else f" ({at})"
        return f" ({self.source})" if named else ""

    def describe(self, with_source: bool = True) -> str:
        """One problem on one line: ``path: expected X, got Y (file, line N)``."""
        return f"{self.path}: expected {self.expected}, got {self.got}{self._where(with_source)}"

    def __str__(self) -> str:
        if len(self.errors) == 1:
            return f"config error: {self.describe()}"
        where = f" in {self.source}" if self.source not in (None, "<dict>") else ""
        lines = "".join(f"\n  {e.describe(with_source=False)}" for e in self.errors)
        return f"config error: {len(self.errors)} problems{where}:{lines}"

    @classmethod
    def combine(cls, errors: Sequence[ConfigError]) -> ConfigError:
        """One exception carrying all ``errors`` (the first one's fields on top)."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        combined = cls(
            first.path,
            first.value,
            first.expected,
            got=first.got,
            source=first.source,
            line=first.line,
            column=first.column,
        )
        combined.errors = tuple(errors)
        return combined


# --------------------------------------------------------------------------- validators


@dataclass
class _Ctx:
    """State of one validation pass: where we are, what went wrong so far."""

    source: str
    base_dir: Path | None  # relative paths resolve against the config file's folder
    device_id: str
    state_dir: Path
    lines: dict[int, dict[Any, int]]  # id(mapping) -> key -> line number
    duplicates: dict[int, list[tuple[Any, int]]]
    errors: list[ConfigError] = field(default_factory=list)

    def error(self, path: str, value: Any, expected: str, *, got: str | None = None, line: int | None = None) -> None:
        self.errors.append(ConfigError(path, value, expected, got=got, source=self.source, line=line))

    def line_of(self, mapping: Any, key: Any) -> int | None:
        return self.lines.get(id(mapping), {}).get(key)


class _Invalid(Exception):
    """Raised by a converter; the field's ``expected`` text becomes the message.

    A converter that can tell *what* is wrong passes a sharper ``expected`` of its own.
    """

    def __init__(self, expected: str | None = None) -> None:
        super().__init__(expected)
        self.expected = expected


@dataclass(frozen=True)
class _Check:
    expected: str
    convert: Callable[[Any, _Ctx], Any]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(expected: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> _Check:
    def convert(v: Any, ctx: _Ctx) -> float:
        if not _is_number(v):
            raise _Invalid
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise _Invalid
        if hi is not None and v > hi:
            raise _Invalid
        return float(v)

    return _Check(expected, convert)


def _integer(
    expected: str, *, lo: int | None = None, hi: int | None = None, also: Callable[[int], bool] | None = None
) -> _Check:
    def convert(v: Any, ctx: _Ctx) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise _Invalid
        if (lo is not None and v < lo) or (hi is not None and v > hi) or (also is not None and not also(v)):
            raise _Invalid
        return v

    return _Check(expected, convert)


def _boolean() -> _Check:
    def convert(v: Any, ctx: _Ctx) -> bool:
        if not isinstance(v, bool):
            raise _Invalid
        return v

    return _Check("true or false", convert)


def _utf8(v: str, expected: str) -> bytes:
    """``v`` encoded; a lone surrogate would pass every other check and fail at the first publish."""
    try:
        return v.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Invalid(f"{expected} in valid UTF-8 text") from exc


# Texts go into every window and health message; the fleet collector refuses longer ones.
MAX_TEXT = 256


def _text(expected: str, pattern: str | None = None) -> _Check:
    regex = re.compile(pattern) if pattern else None
    expected = f"{expected} of at most {MAX_TEXT} characters"

    def convert(v: Any, ctx: _Ctx) -> str:
        if not isinstance(v, str) or not v or "\x00" in v or len(v) > MAX_TEXT:
            raise _Invalid
        _utf8(v, expected)
        if regex is not None and not regex.fullmatch(v):
            raise _Invalid
        return v

    return _Check(expected, convert)


def _choice(*options: str | int) -> _Check:
    """One of ``options``; strings match case-insensitively, YAML's ``5`` matches ``"5"``."""

    def convert(v: Any, ctx: _Ctx) -> str | int:
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            for option in options:
                if v == option or str(v).lower() == str(option).lower():
                    return option
        raise _Invalid

    return _Check("one of " + ", ".join(str(o) for o in options), convert)


def _resolve(v: Any, ctx: _Ctx) -> Path:
    if not isinstance(v, str) or not v or "\x00" in v:
        raise _Invalid
    p = Path(v).expanduser()
    return ctx.base_dir / p if ctx.base_dir is not None and not p.is_absolute() else p


def _path(expected: str = "a file system path") -> _Check:
    return _Check(expected + " (relative to the config file)", _resolve)


def _optional(check: _Check, null_means: str = "") -> _Check:
    def convert(v: Any, ctx: _Ctx) -> Any:
        return None if v is None else check.convert(v, ctx)

    return _Check(check.expected + " or null" + (f" ({null_means})" if null_means else ""), convert)


def _leaf(default: Any, check: _Check) -> Any:
    return field(default=default, metadata={"check": check})


def _required(check: _Check) -> Any:
    return field(metadata={"check": check})


def _derived(check: _Check, derive: Callable[[_Ctx], Any]) -> Any:
    """A field whose default depends on other settings (device_id, state_dir)."""
    return field(metadata={"check": check, "derive": derive})


def _all_defaults(cls: type) -> bool:
    return all(f.default is not MISSING or f.default_factory is not MISSING for f in fields(cls))


def _section(cls: type, *, optional: bool = False) -> Any:
    """A nested mapping; ``optional`` sections are None unless present (``true`` = all defaults)."""
    meta = {"section": cls, "optional": optional}
    if optional:
        return field(default=None, metadata=meta)
    if _all_defaults(cls):
        return field(default_factory=cls, metadata=meta)
    return field(metadata=meta)


def _registry_field(registry: Mapping[str, type], default_type: str | None = None) -> Any:
    meta = {"registry": registry, "default_type": default_type}
    if default_type is not None and _all_defaults(registry[default_type]):
        return field(default_factory=registry[default_type], metadata=meta)
    return field(metadata=meta)


T = TypeVar("T")


def _register(registry: dict[str, type[T]]) -> Callable[[type[T]], type[T]]:
    def add(cls: type[T]) -> type[T]:
        registry[cls.type] = cls  # type: ignore[attr-defined]
        return cls

    return add


# --------------------------------------------------------------------------- schema

_POSITIVE_S = "a positive number of seconds"
_BACKOFF_S = "a positive number of seconds, at most 86400 (a day)"


@dataclass(frozen=True, kw_only=True)
class BackoffConfig:
    """Reconnect delays: start at ``initial``, double per failure, cap at ``max``."""

    initial: float = _leaf(1.0, _number(_BACKOFF_S, lo=0, hi=86400, lo_open=True))
    max: float = _leaf(30.0, _number(_BACKOFF_S, lo=0, hi=86400, lo_open=True))

    def _problems(self) -> Iterator[tuple[str, Any, str]]:
        if self.max < self.initial:
            yield "max", self.max, f"a number of seconds >= initial ({self.initial:g})"


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    """Base of the source types; ``type`` keys ``SOURCE_TYPES`` and ``edge.sources.SOURCES``."""

    type: ClassVar[str]
    reopen_backoff_s: BackoffConfig = _section(BackoffConfig)


SOURCE_TYPES: dict[str, type[SourceConfig]] = {}


@dataclass(frozen=True, kw_only=True)
class CameraSourceConfig(SourceConfig):
    """Capture mode shared by local cameras."""

    width: int = _leaf(640, _integer("a width in pixels >= 16", lo=16))
    height: int = _leaf(480, _integer("a height in pixels >= 16", lo=16))
    fps: float = _leaf(15.0, _number("a positive frame rate", lo=0, lo_open=True))


@_register(SOURCE_TYPES)
@dataclass(frozen=True, kw_only=True)
class Picamera2SourceConfig(CameraSourceConfig):
    """Raspberry Pi camera through libcamera/picamera2."""

    type: ClassVar[str] = "picamera2"
    camera: int = _leaf(0, _integer("a camera number >= 0", lo=0))


def _v4l2_device(v: Any, ctx: _Ctx) -> int | str:
    if isinstance(v, str) and v.isdigit():
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    if isinstance(v, str) and v.startswith("/dev/") and len(v) > 5:
        return v
    raise _Invalid


@_register(SOURCE_TYPES)
@dataclass(frozen=True, kw_only=True)
class V4l2SourceConfig(CameraSourceConfig):
    """USB/V4L2 camera: an index (0 = /dev/video0) or a device path such as /dev/v4l/by-id/..."""

    type: ClassVar[str] = "v4l2"
    device: int | str = _leaf(0, _Check("a device index >= 0 or a path such as /dev/video0", _v4l2_device))


def _stream_url(v: Any, ctx: _Ctx) -> str:
    if not isinstance(v, str):
        raise _Invalid
    parts = urlsplit(v)
    if parts.scheme.lower() not in ("rtsp", "rtsps", "http", "https") or not parts.hostname:
        raise _Invalid
    return v


@_register(SOURCE_TYPES)
@dataclass(frozen=True, kw_only=True)
class RtspSourceConfig(SourceConfig):
    """Network camera stream decoded by FFmpeg."""

    type: ClassVar[str] = "rtsp"
    url: str = _required(_Check("an rtsp://, rtsps://, http:// or https:// URL with a host", _stream_url))


@_register(SOURCE_TYPES)
@dataclass(frozen=True, kw_only=True)
class FileSourceConfig(SourceConfig):
    """A video file: replays and tests. ``realtime`` paces frames at the file's fps."""

    type: ClassVar[str] = "file"
    path: Path = _required(_path("a path to a video file"))
    loop: bool = _leaf(False, _boolean())
    realtime: bool = _leaf(True, _boolean())


@dataclass(frozen=True, kw_only=True)
class ModelsConfig:
    dir: Path = _leaf(DEFAULT_MODEL_DIR, _path("a folder holding the .tflite models"))
    variant: str = _leaf("int8", _choice("int8", "float"))
    detector_input: int = _leaf(512, _choice(512, 320))


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    backend: str = _leaf("auto", _choice("auto", "litert", "tflite_runtime", "tensorflow"))
    threads: int | None = _leaf(None, _optional(_integer("a thread count from 1 to 256", lo=1, hi=256), "all cores"))


@dataclass(frozen=True, kw_only=True)
class DetectorConfig:
    """``score_threshold`` starts a track; weaker detections down to ``weak_threshold`` only
    continue one. ``min_face_px`` is the smallest face (shorter side, frame pixels) the
    detection plan must find; smaller values cost more enlarged tiles (0: one full-frame pass)."""

    score_threshold: float = _leaf(0.5, _number("a score above 0, at most 1", lo=0, hi=1, lo_open=True))
    weak_threshold: float = _leaf(0.25, _number("a score between 0 and 1", lo=0, hi=1))
    min_face_px: int = _leaf(20, _integer("a face size in pixels >= 0", lo=0))
    # Frames between searches of the same tile for small faces: 1 + tiles / interval passes a frame.
    tile_interval: int = _leaf(3, _integer("a number of frames >= 1", lo=1))


@dataclass(frozen=True, kw_only=True)
class AttributesConfig:
    """Which estimates run. Ethnicity is opt-in: inferring it is restricted in some
    jurisdictions (e.g. EU AI Act Art. 5(1)(g))."""

    age: bool = _leaf(True, _boolean())
    gender: bool = _leaf(True, _boolean())
    expression: bool = _leaf(True, _boolean())
    ethnicity: bool = _leaf(False, _boolean())
    # The quality gate: smaller faces are counted but not described (their visitor lands in
    # `unknown`); measured in models/README.md "Attribute accuracy against face size".
    min_face_px: int = _leaf(DESCRIBE_MIN_FACE_PX, _integer("a face size in pixels >= 0", lo=0))
    # A visitor's gender is published only when its kept estimates agree (three quarters name it)
    # and one of them reaches this score, or three of them average 0.65 (edge.tracker.agreed_gender);
    # otherwise it stays unknown rather than a coin toss (one estimate at >= 0.8: 93-99% right).
    min_gender_score: float = _leaf(MIN_GENDER_SCORE, _number("a score between 0 and 1", lo=0, hi=1))
    # An estimate near a decision (gender 0.5 or min_gender_score, the top two expressions) is the mean
    # over this many slightly shifted and scaled crops of the face, so that box jitter (frame to frame,
    # int8 against float) moves it less; the others use the box alone (edge.attributes.VIEW_MARGINS).
    views: int = _leaf(DEFAULT_VIEWS, _choice(*VIEW_COUNTS))


@dataclass(frozen=True, kw_only=True)
class TrackingConfig:
    iou_threshold: float = _leaf(0.3, _number("an overlap between 0 (exclusive) and 1", lo=0, hi=1, lo_open=True))
    max_missed_s: float = _leaf(1.0, _number(_POSITIVE_S, lo=0, lo_open=True))
    min_visitor_s: float = _leaf(1.0, _number("a number of seconds >= 0", lo=0))
    min_hits: int = _leaf(3, _integer("a detection count >= 1", lo=1))
    best_observations: int = _leaf(3, _integer("an observation count >= 1", lo=1))


def _age_brackets(v: Any, ctx: _Ctx) -> tuple[int, ...]:
    if not isinstance(v, list) or not v:
        raise _Invalid
    if any(not isinstance(a, int) or isinstance(a, bool) for a in v) or v[0] != 0:
        raise _Invalid
    if any(b <= a for a, b in zip(v, v[1:])):
        raise _Invalid
    return tuple(v)


@dataclass(frozen=True, kw_only=True)
class AggregationConfig:
    """Counting windows. ``window_s`` divides a day so windows align to midnight
    on every device; cells under ``min_cell`` visitors are suppressed."""

    window_s: int = _leaf(
        60,
        _integer(
            "a positive whole number of seconds that divides 86400 (e.g. 60, 300, 900, 3600)",
            lo=1,
            also=lambda s: 86400 % s == 0,
        ),
    )
    min_cell: int = _leaf(5, _integer("a visitor count >= 1", lo=1))
    age_brackets: tuple[int, ...] = _leaf(
        (0, 18, 25, 35, 45, 55, 65), _Check("a list of strictly increasing whole ages starting at 0", _age_brackets)
    )
    # How often the open window's counts so far are saved: an unclean stop loses at most this much.
    checkpoint_s: float = _leaf(10.0, _number("a number of seconds > 0", lo=0, lo_open=True))


@dataclass(frozen=True, kw_only=True)
class SinkConfig:
    """Base of the sink types; ``type`` keys ``SINK_TYPES``."""

    type: ClassVar[str]
    # Keys refused in every sink, with the reason as the expectation.
    _forbidden: ClassVar[dict[str, str]] = {}


SINK_TYPES: dict[str, type[SinkConfig]] = {}


def _jsonl_path(v: Any, ctx: _Ctx) -> str:
    return "-" if v == "-" else str(_resolve(v, ctx))


@_register(SINK_TYPES)
@dataclass(frozen=True, kw_only=True)
class JsonlSinkConfig(SinkConfig):
    """One JSON object per line; ``path: "-"`` writes to stdout (journald under systemd)."""

    type: ClassVar[str] = "jsonl"
    path: str = _leaf("-", _Check('"-" for stdout or a file path', _jsonl_path))

    @property
    def to_stdout(self) -> bool:
        return self.path == "-"


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """TLS to the broker; ``ca_file: null`` trusts the system CAs."""

    ca_file: Path | None = _leaf(None, _optional(_path("a CA bundle file"), "system CAs"))
    cert_file: Path | None = _leaf(None, _optional(_path("a client certificate file")))
    key_file: Path | None = _leaf(None, _optional(_path("a client key file")))
    insecure: bool = _leaf(False, _boolean())

    def _problems(self) -> Iterator[tuple[str, Any, str]]:
        if (self.cert_file is None) != (self.key_file is None):
            yield "key_file", self.key_file, "cert_file and key_file to be given together"


@dataclass(frozen=True, kw_only=True)
class SpoolConfig:
    """Windows not yet acknowledged by the broker, kept in the state store (``edge.state_store``)."""

    _forbidden: ClassVar[dict[str, str]] = {
        "path": "no path: the spool lives in the state store, <state_dir>/state.sqlite3, numbered and "
        "stored with each window in one transaction (remove this key; a spool.sqlite3 left in state_dir "
        "is taken over at the next start)",
    }
    max_windows: int = _leaf(10080, _integer("a window count >= 1", lo=1))


@dataclass(frozen=True, kw_only=True)
class DiscoveryConfig:
    """Home Assistant MQTT discovery."""

    enabled: bool = _leaf(True, _boolean())
    prefix: str = _leaf("homeassistant", _text("a topic prefix without + or #", r"[^+#]+"))


# MQTT topics are at most 65,535 bytes; a prefix far below that leaves room for the topic names
# and for Home Assistant's discovery topics.
_TOPIC_PREFIX_MAX_BYTES = 1024


def _topic_prefix(v: Any, ctx: _Ctx) -> str:
    if not isinstance(v, str) or not v or any(c in v for c in "+#\x00"):
        raise _Invalid
    if v.startswith("$"):
        raise _Invalid("a topic prefix not starting with '$' (brokers reserve those topics, e.g. $SYS)")
    if len(_utf8(v, "a topic prefix")) > _TOPIC_PREFIX_MAX_BYTES:
        raise _Invalid(f"a topic prefix of at most {_TOPIC_PREFIX_MAX_BYTES} bytes")
    return v if v.endswith("/") else v + "/"


_HOST = "a broker host name or IP address"
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")


def _broker_host(v: Any, ctx: _Ctx) -> str:
    """A host for ``getaddrinfo``: an IP literal or an RFC 1123 name (``_`` tolerated, as Docker uses it).

    Caught here rather than at connect time because paho would only retry a URL or a
    typo forever with a "name not known" in the log.
    """
    if not isinstance(v, str) or not v:
        raise _Invalid
    if "://" in v:
        parts = urlsplit(v)
        secure = parts.scheme.lower() in ("mqtts", "ssl", "tls", "wss", "https")
        keys = [f"port: {parts.port}"] if parts.port else []
        keys += ["tls: true"] if secure else []
        raise _Invalid(
            f"only the broker host, not a URL: host: {parts.hostname or '<name>'!r}"
            f" (set port and tls as keys of their own{': ' + ', '.join(keys) if keys else ''})"
        )
    try:
        ipaddress.ip_address(v)  # also IPv6 with a zone, e.g. fe80::1%eth0
        return v
    except ValueError:
        pass
    if v.startswith("[") and v.endswith("]"):
        raise _Invalid(f"{_HOST}; write an IPv6 address without brackets, e.g. '::1'")
    if not v.isascii() or not v.isprintable():
        raise _Invalid(f"{_HOST} in printable ASCII (an internationalised name in its xn-- punycode form)")
    if v.count(":") == 1 or "/" in v:
        raise _Invalid(f"{_HOST} only, e.g. {re.split('[:/]', v)[0]!r}; set the port with port:")
    name = v[:-1] if v.endswith(".") else v  # a trailing dot marks a fully qualified name
    if len(name) > 253:
        raise _Invalid(f"{_HOST} of at most 253 characters")
    labels = name.split(".")
    if "" in labels:
        raise _Invalid(f"{_HOST} without empty labels (no '..', no leading dot)")
    if any(len(label) > 63 for label in labels):
        raise _Invalid(f"{_HOST} whose labels (the parts between dots) have at most 63 characters")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise _Invalid(f"{_HOST} of letters, digits and '-' (not at either end of a label)")
    if re.fullmatch(r"[0-9.]+", name):
        raise _Invalid("an IPv4 address of four numbers 0..255, or a host name")
    return v


_PASSWORD_SOURCES = ("password_file", "password_env", "password_credential")


@_register(SINK_TYPES)
@dataclass(frozen=True, kw_only=True)
class MqttSinkConfig(SinkConfig):
    """MQTT publisher. The password never sits in this file: it is read from a
    file, an environment variable or a systemd credential (see ``password()``)."""

    type: ClassVar[str] = "mqtt"
    _forbidden: ClassVar[dict[str, str]] = {
        "password": "no clear-text password in the config file; use password_file, "
        "password_env or password_credential (a systemd credential)",
    }
    host: str = _leaf("localhost", _Check(_HOST, _broker_host))
    port: int = _leaf(1883, _integer("a TCP port 1..65535", lo=1, hi=65535))
    protocol: str = _leaf("5", _choice("5", "3.1.1"))
    # MQTT 3.1.1 cannot refuse a publish (a broker acknowledges what its ACL drops): with read_back
    # a window counts as delivered when it comes back on the device's own subscription. Needs
    # read access to the counts topic; false trusts the acknowledgement. Ignored for MQTT 5.
    read_back: bool = _leaf(True, _boolean())
    # MQTT encodes the keepalive in 16 bits.
    keepalive: int = _leaf(60, _integer("a keepalive in whole seconds from 1 to 65535", lo=1, hi=65535))
    topic_prefix: str = _derived(
        _Check("a topic prefix without + or #", _topic_prefix), lambda ctx: f"edge/{ctx.device_id}/"
    )
    # QoS 0 has no PUBACK, so a spooled window could never be confirmed: at least once needs >= 1.
    qos: int = _leaf(1, _choice(1, 2))
    tls: TlsConfig | None = _section(TlsConfig, optional=True)
    username: str | None = _leaf(None, _optional(_text("a user name")))
    password_file: Path | None = _leaf(None, _optional(_path("a file holding the password")))
    password_env: str | None = _leaf(None, _optional(_text("an environment variable name", r"[A-Za-z_][A-Za-z0-9_]*")))
    password_credential: str | None = _leaf(None, _optional(_text("a systemd credential name", r"[A-Za-z0-9_.@-]+")))
    spool: SpoolConfig = _section(SpoolConfig)
    health_interval_s: float = _leaf(30.0, _number(_POSITIVE_S, lo=0, lo_open=True))
    discovery: DiscoveryConfig = _section(DiscoveryConfig)

    def _problems(self) -> Iterator[tuple[str, Any, str]]:
        yield from password_problems(self)

    def password(self) -> str | None:
        """Read the broker password from its configured place (None when none is set).

        Read on demand, not at parse time, so the secret is not kept in the
        config object (which may be logged).
        """
        return read_password(self, "sink")


def password_problems(section: Any) -> Iterator[tuple[str, Any, str]]:
    """At most one password source, and a user name with it (``_problems`` of a section that has them)."""
    given = [k for k in _PASSWORD_SOURCES if getattr(section, k) is not None]
    if len(given) > 1:
        yield given[1], getattr(section, given[1]), f"only one of {', '.join(_PASSWORD_SOURCES)} (also got {given[0]})"
    if given and section.username is None:
        yield "username", None, f"a user name when {given[0]} is set"


def read_password(section: Any, path: str) -> str | None:
    """The password named by ``section``'s password_file/_env/_credential (None when none is set);
    errors name the key as ``<path>.password_...``."""
    if section.password_file is not None:
        return _read_secret(f"{path}.password_file", section.password_file)
    if section.password_env is not None:
        value = os.environ.get(section.password_env)
        if value is None:
            raise ConfigError(
                f"{path}.password_env",
                section.password_env,
                "the name of a set environment variable",
                got=f"{section.password_env} (not set)",
            )
        return value
    if section.password_credential is not None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise ConfigError(
                f"{path}.password_credential",
                section.password_credential,
                "to run under systemd with LoadCredential=/SetCredential= (CREDENTIALS_DIRECTORY is not set)",
            )
        return _read_secret(f"{path}.password_credential", Path(creds) / section.password_credential)
    return None


def _read_secret(key: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            key, str(path), "a readable file holding the password", got=f"{path} ({exc.strerror or exc})"
        ) from exc


def _default_state_dir() -> Path:
    # systemd's StateDirectory= sets $STATE_DIRECTORY (colon-separated when several).
    env = os.environ.get("STATE_DIRECTORY", "")
    first = env.split(":")[0]
    return Path(first) if first else DEFAULT_STATE_DIR.expanduser()


_DEVICE_ID = _text(
    "1 to 64 letters, digits, '_' or '-' (it becomes an MQTT client id and topic level)", r"[A-Za-z0-9_-]{1,64}"
)
_STATE_DIR = _path("a folder for persistent state (the state store: sequence numbers, spool, checkpoint)")


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole validated configuration. Build it with ``load_config``/``parse_config``."""

    device_id: str = _required(_DEVICE_ID)
    site: str = _leaf("default", _text("a non-empty site name"))
    source: SourceConfig = _registry_field(SOURCE_TYPES)
    models: ModelsConfig = _section(ModelsConfig)
    runtime: RuntimeConfig = _section(RuntimeConfig)
    detector: DetectorConfig = _section(DetectorConfig)
    attributes: AttributesConfig = _section(AttributesConfig)
    tracking: TrackingConfig = _section(TrackingConfig)
    aggregation: AggregationConfig = _section(AggregationConfig)
    sink: SinkConfig = _registry_field(SINK_TYPES, default_type="jsonl")
    state_dir: Path = _derived(_STATE_DIR, lambda ctx: _default_state_dir())
    log_level: str = _leaf("INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"))


# --------------------------------------------------------------------------- builder

_FAILED = object()


def _join(path: str, key: Any) -> str:
    return str(key) if path in ("", _ROOT) else f"{path}.{key}"


def _did_you_mean(word: Any, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(ctx: _Ctx, raw: Mapping[Any, Any], key: Any, path: str, known: Sequence[str], what: str) -> None:
    ctx.error(
        _join(path, key),
        raw[key],
        f"one of the keys{what} {', '.join(known)}",
        got=f"unknown key {key!r}{_did_you_mean(key, known)}",
        line=ctx.line_of(raw, key),
    )


def _build(cls: type, raw: Any, path: str, ctx: _Ctx, line: int | None, what: str = "") -> Any:
    """Validate ``raw`` against dataclass ``cls``; record errors in ``ctx``, return ``_FAILED`` on any."""
    known = [f.name for f in fields(cls)]
    if raw is None or isinstance(raw, _Missing):
        raw = {}
    if not isinstance(raw, Mapping):
        ctx.error(path, raw, f"a mapping of {', '.join(known)}", line=line)
        return _FAILED
    before = len(ctx.errors)
    for key, dup_line in ctx.duplicates.get(id(raw), []):
        ctx.error(_join(path, key), raw.get(key), "each key once", got="a duplicate key", line=dup_line)
    forbidden: dict[str, str] = getattr(cls, "_forbidden", {})
    for key in raw:
        if key in forbidden:
            secret = key == "password"
            ctx.error(
                _join(path, key),
                "<redacted>" if secret else raw[key],
                forbidden[key],
                got=f"a clear-text {key}" if secret else None,
                line=ctx.line_of(raw, key),
            )
        elif key not in known:
            _unknown_key(ctx, raw, key, path, known, what)
    values: dict[str, Any] = {}
    for f in fields(cls):
        present = f.name in raw
        value = _field(
            f,
            raw.get(f.name, _MISSING_KEY),
            present,
            _join(path, f.name),
            ctx,
            ctx.line_of(raw, f.name) if present else line,
        )
        if value is not _FAILED:
            values[f.name] = value
    if len(ctx.errors) > before:
        return _FAILED
    obj = cls(**values)
    problems = getattr(obj, "_problems", None)
    if problems is not None:
        for key, value, expected in problems():
            ctx.error(_join(path, key), value, expected, line=ctx.line_of(raw, key) or line)
    return _FAILED if len(ctx.errors) > before else obj


def _field(f: Field[Any], value: Any, present: bool, path: str, ctx: _Ctx, line: int | None) -> Any:
    meta = f.metadata
    if "section" in meta:
        if meta["optional"]:
            if not present or value is None or value is False:
                return None
            if value is True:
                value = {}
        return _build(meta["section"], value, path, ctx, line)
    if "registry" in meta:
        return _choose(meta["registry"], meta["default_type"], value, path, ctx, line)
    check: _Check = meta["check"]
    if present:
        try:
            return check.convert(value, ctx)
        except _Invalid as exc:
            ctx.error(path, value, exc.expected or check.expected, line=line)
            return _FAILED
    if "derive" in meta:
        return meta["derive"](ctx)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    ctx.error(path, value, check.expected, line=line)
    return _FAILED


def _choose(
    registry: Mapping[str, type], default_type: str | None, raw: Any, path: str, ctx: _Ctx, line: int | None
) -> Any:
    """Pick the class named by ``raw['type']`` and validate the rest of ``raw`` against it."""
    types = ", ".join(registry)
    if isinstance(raw, _Missing) or raw is None:
        if default_type is None:
            ctx.error(path, raw, f"a mapping with 'type: <{' | '.join(registry)}>'", line=line)
            return _FAILED
        raw = {}
    if not isinstance(raw, Mapping):
        ctx.error(path, raw, f"a mapping with 'type: <{' | '.join(registry)}>'", line=line)
        return _FAILED
    kind = raw.get("type", default_type)
    type_line = ctx.line_of(raw, "type") or line
    if kind is None:
        ctx.error(_join(path, "type"), _MISSING_KEY, f"one of {types}", line=type_line)
        return _FAILED
    if kind not in registry:
        ctx.error(
            _join(path, "type"),
            kind,
            f"one of {types}",
            got=f"{kind!r}{_did_you_mean(kind, list(registry))}",
            line=type_line,
        )
        return _FAILED
    rest = {k: v for k, v in raw.items() if k != "type"}
    # Keep line numbers and duplicate-key reports for the copied mapping.
    ctx.lines[id(rest)] = ctx.lines.get(id(raw), {})
    ctx.duplicates[id(rest)] = ctx.duplicates.get(id(raw), [])
    obj = _build(registry[kind], rest, path, ctx, line, what=f" for {path} type {kind!r}:")
    del ctx.lines[id(rest)], ctx.duplicates[id(rest)]
    return obj


# --------------------------------------------------------------------------- YAML with line numbers


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers each mapping key's line (for error messages) and duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.key_lines: dict[int, dict[Any, int]] = {}
        self.duplicates: dict[int, list[tuple[Any, int]]] = {}


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
    data: dict[Any, Any] = {}
    yield data
    loader.flatten_mapping(node)
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
            ) from None
        if key in data:
            loader.duplicates.setdefault(id(data), []).append((key, key_node.start_mark.line + 1))
        data[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    loader.key_lines[id(data)] = lines


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)

# An integer longer than this is no setting; it becomes an _Oversized value that fails validation
# under its key (Python itself refuses int() of more than 4,300 digits, with no key or line).
_MAX_INT_CHARS = 64


def _construct_int(loader: _LineLoader, node: yaml.ScalarNode) -> Any:
    text = str(node.value)
    if len(text) > _MAX_INT_CHARS:
        return _Oversized(sum(c.isdigit() for c in text))
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)

# A config is a few kilobytes; these bounds keep a hostile or broken file from costing minutes
# or gigabytes before it is refused.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 100_000  # values in the document with every alias expanded


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds with aliases expanded (an alias bomb's true size),
    counted without expanding anything: each distinct node is visited once."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes and not children_done:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        kids: list[yaml.Node] = (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        )
        if children_done:
            sizes[key] = min(1 + sum(sizes.get(id(k), 0) for k in kids), MAX_CONFIG_NODES + 1)
        else:
            sizes[key] = 0  # in progress: a node that contains itself counts once
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(root)]


# --------------------------------------------------------------------------- entry points


def _probe(check: _Check, raw: Mapping[Any, Any], key: str, base_dir: Path | None) -> Any:
    """Convert one top-level value quietly (for derived defaults); None if absent/invalid."""
    if key not in raw:
        return None
    ctx = _Ctx("", base_dir, "", Path(), {}, {})
    try:
        return check.convert(raw[key], ctx)
    except _Invalid:
        return None


def _parse(
    mapping: Any,
    source: str,
    base_dir: Path | None,
    lines: dict[int, dict[Any, int]],
    duplicates: dict[int, list[tuple[Any, int]]],
    root: type[T],
) -> T:
    if not isinstance(mapping, dict):
        names = ", ".join(f.name for f in fields(root))  # type: ignore[arg-type]
        wanted = "a mapping with at least device_id and source" if root is Config else f"a mapping of {names}"
        raise ConfigError(_ROOT, mapping, wanted, source=source)
    ctx = _Ctx(
        source=source,
        base_dir=base_dir,
        device_id=_probe(_DEVICE_ID, mapping, "device_id", base_dir) or "<device_id>",
        state_dir=_probe(_STATE_DIR, mapping, "state_dir", base_dir) or _default_state_dir(),
        lines=lines,
        duplicates=duplicates,
    )
    config = _build(root, mapping, _ROOT, ctx, None)
    if ctx.errors:
        # File order reads best; errors without a line (dict input) keep discovery order.
        ordered = sorted(ctx.errors, key=lambda e: (e.line is None, e.line or 0))
        raise ConfigError.combine(ordered)
    return config


def parse_config(mapping: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Validate an already-loaded mapping (relative paths stay relative to the working directory)."""
    return parse_typed(mapping, Config, source)


def parse_typed(mapping: Mapping[str, Any], root: type[T], source: str = "<dict>") -> T:
    """``parse_config`` for another schema ``root`` (the fleet collector's), same rules and messages."""
    return _parse(dict(mapping) if isinstance(mapping, Mapping) else mapping, source, None, {}, {}, root)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate one YAML config file; raises ``ConfigError`` listing every problem."""
    return load_typed(path, Config)


def load_typed(path: str | os.PathLike[str], root: type[T]) -> T:
    """``load_config`` for another schema ``root`` (the fleet collector's), same rules and messages."""
    path = Path(path)
    name = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                name, None, f"a config file of at most {MAX_CONFIG_BYTES >> 20} MB", got=f"{path.stat().st_size} bytes"
            )
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(name, None, "a readable UTF-8 YAML config file", got=reason) from exc
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node) > MAX_CONFIG_NODES:
            raise ConfigError(
                name,
                None,
                f"at most {MAX_CONFIG_NODES} values with YAML aliases (*name) expanded",
                got=f"more than {MAX_CONFIG_NODES}",
            )
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            name,
            None,
            "valid YAML",
            got=problem,
            line=mark.line + 1 if mark is not None else None,
            column=mark.column + 1 if mark is not None else None,
        ) from exc
    finally:
        loader.dispose()
    return _parse(data, name, path.resolve().parent, loader.key_lines, loader.duplicates, root)
