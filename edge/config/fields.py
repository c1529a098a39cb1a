"""Declaring settings: validators (``Check``) and the dataclass fields that carry them.

A section is a frozen dataclass whose fields come from ``leaf``/``required``/``section``/...; the
builder (``edge.config.build``) reads each field's metadata, so a new key is one field and its
check, written where the component that uses it is declared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from edge.config.errors import ConfigError


@dataclass
class Ctx:
    """State of one validation pass: where we are, what went wrong so far."""

    source: str
    base_dir: Path | None  # relative paths resolve against the config file's folder
    lines: dict[int, dict[Any, int]]  # id(mapping) -> key -> line number
    duplicates: dict[int, list[tuple[Any, int]]]
    # Top-level values that defaults deeper down derive from (the device id in a topic prefix),
    # read quietly before the pass by the root schema's ``derive_context`` (see ``probe``).
    context: Mapping[str, Any] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)

    def error(self, path: str, value: Any, expected: str, *, got: str | None = None, line: int | None = None) -> None:
        self.errors.append(ConfigError(path, value, expected, got=got, source=self.source, line=line))

    def line_of(self, mapping: Any, key: Any) -> int | None:
        return self.lines.get(id(mapping), {}).get(key)


class Invalid(Exception):
    """Raised by a converter; the field's ``expected`` text becomes the message.

    A converter that can tell *what* is wrong passes a sharper ``expected`` of its own.
    """

    def __init__(self, expected: str | None = None) -> None:
        super().__init__(expected)
        self.expected = expected


@dataclass(frozen=True)
class Check:
    expected: str
    convert: Callable[[Any, Ctx], Any]


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def number(expected: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Check:
    def convert(v: Any, ctx: Ctx) -> float:
        if not is_number(v):
            raise Invalid
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise Invalid
        if hi is not None and v > hi:
            raise Invalid
        return float(v)

    return Check(expected, convert)


def integer(
    expected: str, *, lo: int | None = None, hi: int | None = None, also: Callable[[int], bool] | None = None
) -> Check:
    def convert(v: Any, ctx: Ctx) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise Invalid
        if (lo is not None and v < lo) or (hi is not None and v > hi) or (also is not None and not also(v)):
            raise Invalid
        return v

    return Check(expected, convert)


def boolean() -> Check:
    def convert(v: Any, ctx: Ctx) -> bool:
        if not isinstance(v, bool):
            raise Invalid
        return v

    return Check("true or false", convert)


def utf8(v: str, expected: str) -> bytes:
    """``v`` encoded; a lone surrogate would pass every other check and fail at the first publish."""
    try:
        return v.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid(f"{expected} in valid UTF-8 text") from exc


# Texts go into every window and health message; the fleet collector refuses longer ones.
MAX_TEXT = 256


def text(expected: str, pattern: str | None = None) -> Check:
    regex = re.compile(pattern) if pattern else None
    expected = f"{expected} of at most {MAX_TEXT} characters"

    def convert(v: Any, ctx: Ctx) -> str:
        if not isinstance(v, str) or not v or "\x00" in v or len(v) > MAX_TEXT:
            raise Invalid
        utf8(v, expected)
        if regex is not None and not regex.fullmatch(v):
            raise Invalid
        return v

    return Check(expected, convert)


def choice(*options: str | int) -> Check:
    """One of ``options``; strings match case-insensitively, YAML's ``5`` matches ``"5"``."""

    def convert(v: Any, ctx: Ctx) -> str | int:
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            for option in options:
                if v == option or str(v).lower() == str(option).lower():
                    return option
        raise Invalid

    return Check("one of " + ", ".join(str(o) for o in options), convert)


def resolve(v: Any, ctx: Ctx) -> Path:
    if not isinstance(v, str) or not v or "\x00" in v:
        raise Invalid
    p = Path(v).expanduser()
    return ctx.base_dir / p if ctx.base_dir is not None and not p.is_absolute() else p


def file_path(expected: str = "a file system path") -> Check:
    return Check(expected + " (relative to the config file)", resolve)


def optional(check: Check, null_means: str = "") -> Check:
    def convert(v: Any, ctx: Ctx) -> Any:
        return None if v is None else check.convert(v, ctx)

    return Check(check.expected + " or null" + (f" ({null_means})" if null_means else ""), convert)


def leaf(default: Any, check: Check) -> Any:
    return field(default=default, metadata={"check": check})


def required(check: Check) -> Any:
    return field(metadata={"check": check})


def derived(check: Check, derive: Callable[[Ctx], Any]) -> Any:
    """A field whose default depends on other settings (``Ctx.context``) or on the environment."""
    return field(metadata={"check": check, "derive": derive})


def _all_defaults(cls: type) -> bool:
    return all(f.default is not MISSING or f.default_factory is not MISSING for f in fields(cls))


def section(cls: type, *, optional: bool = False) -> Any:
    """A nested mapping; ``optional`` sections are None unless present (``true`` = all defaults)."""
    meta = {"section": cls, "optional": optional}
    if optional:
        return field(default=None, metadata=meta)
    if _all_defaults(cls):
        return field(default_factory=cls, metadata=meta)
    return field(metadata=meta)


def registry_field(registry: Mapping[str, type], default_type: str | None = None) -> Any:
    meta = {"registry": registry, "default_type": default_type}
    if default_type is not None and _all_defaults(registry[default_type]):
        return field(default_factory=registry[default_type], metadata=meta)
    return field(metadata=meta)


T = TypeVar("T")


def register(registry: dict[str, type[T]]) -> Callable[[type[T]], type[T]]:
    def add(cls: type[T]) -> type[T]:
        registry[cls.type] = cls  # type: ignore[attr-defined]
        return cls

    return add


def probe(check: Check, raw: Mapping[Any, Any], key: str, base_dir: Path | None) -> Any:
    """Convert one top-level value quietly (for ``Ctx.context``); None if absent or invalid: the
    pass itself reports it."""
    if key not in raw:
        return None
    try:
        return check.convert(raw[key], Ctx("", base_dir, {}, {}))
    except Invalid:
        return None


POSITIVE_S = "a positive number of seconds"
