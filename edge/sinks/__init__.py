"""Where finished windows go: a JSON-lines stream, or an MQTT broker with store-and-forward.

Plugins (``edge.plugins``): ``jsonl`` and ``mqtt``; each module holds its config section, its
``Sink``, its ``build`` and its ``edge check`` probe. Beside them: the interface (``base``), the
health message (``health``), Home Assistant discovery (``discovery``), removing a device from
the broker (``forget``) and the parts of the MQTT sink (``mqtt_link``, ``mqtt_drain``,
``mqtt_delivery``, ``mqtt_diagnostics``: modules without a ``PLUGIN``). A new sink is one new
module here.
"""

from __future__ import annotations

import sys
from typing import Any

from edge.plugins import Plugin, config_types, discover
from edge.sinks.base import Sink, SinkConfig, SinkContext, SinkError, dumps
from edge.sinks.discovery import BREAKDOWN_GROUPS, STATUS_OFFLINE, STATUS_ONLINE
from edge.sinks.health import HEALTH_SCHEMA, build_health, pi_health
from edge.state_store import StateStore

SINK_PLUGINS: dict[str, Plugin[Sink]] = dict(discover(sys.modules[__name__]))
SINK_TYPES: dict[str, type[Any]] = config_types(SINK_PLUGINS)


def build_sink(config: SinkConfig, context: SinkContext, store: StateStore) -> Sink:
    """The sink ``config`` names, delivering from ``store``'s spool."""
    return SINK_PLUGINS[config.type].build(config, context, store)


__all__ = [
    "BREAKDOWN_GROUPS",
    "HEALTH_SCHEMA",
    "SINK_PLUGINS",
    "SINK_TYPES",
    "STATUS_OFFLINE",
    "STATUS_ONLINE",
    "Sink",
    "SinkConfig",
    "SinkContext",
    "SinkError",
    "build_health",
    "build_sink",
    "dumps",
    "pi_health",
]
