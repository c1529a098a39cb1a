"""The one exception a configuration problem raises, and how values are shown in it.

Messages name the key path, the offending value (shortened, URL passwords masked) and what was
expected, with the file and line, so an operator fixes the file in one go.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

ROOT = "(top level)"


class Missing:
    """Marks a key that is absent from the file (distinct from an explicit null)."""

    def __repr__(self) -> str:
        return "nothing"


MISSING_KEY = Missing()


_URL_SECRET = re.compile(r"(\w[\w+.-]*://[^/@\s:]*:)[^@\s]*@")


_RENDER_CHARS = 80


class Oversized:
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
    if isinstance(value, Missing):
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
