"""Validating a loaded mapping against a schema of sections: every problem in one pass."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edge.config.errors import MISSING_KEY, ROOT, ConfigError, Missing
from edge.config.fields import Check, Ctx, Invalid
from edge.config.yaml_lines import MAX_CONFIG_BYTES, MAX_CONFIG_NODES, LineLoader, expanded_size

T = TypeVar("T")

_FAILED = object()


def _join(path: str, key: Any) -> str:
    return str(key) if path in ("", ROOT) else f"{path}.{key}"


def _did_you_mean(word: Any, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(ctx: Ctx, raw: Mapping[Any, Any], key: Any, path: str, known: Sequence[str], what: str) -> None:
    ctx.error(
        _join(path, key),
        raw[key],
        f"one of the keys{what} {', '.join(known)}",
        got=f"unknown key {key!r}{_did_you_mean(key, known)}",
        line=ctx.line_of(raw, key),
    )


def _build(cls: type, raw: Any, path: str, ctx: Ctx, line: int | None, what: str = "") -> Any:
    """Validate ``raw`` against dataclass ``cls``; record errors in ``ctx``, return ``_FAILED`` on any."""
    known = [f.name for f in fields(cls)]
    if raw is None or isinstance(raw, Missing):
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
            raw.get(f.name, MISSING_KEY),
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


def _field(f: Field[Any], value: Any, present: bool, path: str, ctx: Ctx, line: int | None) -> Any:
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
    check: Check = meta["check"]
    if present:
        try:
            return check.convert(value, ctx)
        except Invalid as exc:
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
    registry: Mapping[str, type], default_type: str | None, raw: Any, path: str, ctx: Ctx, line: int | None
) -> Any:
    """Pick the class named by ``raw['type']`` and validate the rest of ``raw`` against it."""
    types = ", ".join(registry)
    if isinstance(raw, Missing) or raw is None:
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
        ctx.error(_join(path, "type"), MISSING_KEY, f"one of {types}", line=type_line)
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
        wanted = getattr(root, "WANTED", f"a mapping of {names}")
        raise ConfigError(ROOT, mapping, wanted, source=source)
    derive = getattr(root, "derive_context", None)
    context = derive(mapping, base_dir) if derive is not None else {}
    ctx = Ctx(source=source, base_dir=base_dir, lines=lines, duplicates=duplicates, context=context)
    config = _build(root, mapping, ROOT, ctx, None)
    if ctx.errors:
        # File order reads best; errors without a line (dict input) keep discovery order.
        ordered = sorted(ctx.errors, key=lambda e: (e.line is None, e.line or 0))
        raise ConfigError.combine(ordered)
    return config


def parse_typed(mapping: Mapping[str, Any], root: type[T], source: str = "<dict>") -> T:
    """Validate an already-loaded mapping against the schema ``root`` (relative paths stay relative
    to the working directory); raises ``ConfigError`` listing every problem."""
    return _parse(dict(mapping) if isinstance(mapping, Mapping) else mapping, source, None, {}, {}, root)


def load_typed(path: str | os.PathLike[str], root: type[T]) -> T:
    """Read one YAML file and validate it against the schema ``root``; raises ``ConfigError``
    listing every problem, with file and line."""
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
    loader = LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and expanded_size(node) > MAX_CONFIG_NODES:
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
