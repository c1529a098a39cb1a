"""Swappable stages (sources, sinks) as plugins: one file each, found by looking, not by a list.

A plugin module in a plugin package (``edge.sources``, ``edge.sinks``) ends with
``PLUGIN = Plugin(config=..., build=..., check=...)``: its config section (whose ``type`` class
variable is the value of ``type:`` in the YAML), what builds the stage from that section, and its
``edge check`` probe. ``discover`` imports every module of the package and keys the plugins by
type, so adding a backend is adding one file; nothing else lists them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, TypeVar

from edge.checks import Check

S = TypeVar("S")  # the stage a plugin builds


@dataclass(frozen=True)
class Plugin(Generic[S]):
    """One backend: its config section class, its builder and its ``edge check`` probe."""

    config: type[Any]  # a frozen section dataclass with ``type: ClassVar[str]``
    build: Callable[..., S]
    check: Check

    @property
    def type(self) -> str:
        return str(self.config.type)


def discover(package: ModuleType) -> Mapping[str, Plugin[Any]]:
    """Every ``PLUGIN`` in ``package``'s modules, keyed by type (sorted, so messages are stable)."""
    found: dict[str, Plugin[Any]] = {}
    where: dict[str, str] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        plugin = getattr(module, "PLUGIN", None)
        if not isinstance(plugin, Plugin):
            continue
        if plugin.type in found:
            raise RuntimeError(
                f"{package.__name__}.{where[plugin.type]} and .{info.name} both declare type {plugin.type!r}"
            )
        found[plugin.type], where[plugin.type] = plugin, info.name
    return dict(sorted(found.items()))


def config_types(plugins: Mapping[str, Plugin[Any]]) -> dict[str, type[Any]]:
    """type -> config section class: the registry a root schema's ``registry_field`` chooses from."""
    return {name: plugin.config for name, plugin in plugins.items()}
