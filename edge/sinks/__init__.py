"""Where finished windows go: a JSON-lines stream, or an MQTT broker with store-and-forward.

One module per job: the interface (``base``), each sink (``jsonl``, ``mqtt``),
the health message (``health``), Home Assistant discovery (``discovery``) and
removing a device from the broker (``forget``). ``SINKS`` maps a config's
``type`` to its class.
"""

from __future__ import annotations

from edge.sinks.base import Sink, SinkError, dumps
from edge.sinks.discovery import BREAKDOWN_GROUPS, STATUS_OFFLINE, STATUS_ONLINE
from edge.sinks.health import HEALTH_SCHEMA, build_health, pi_health
from edge.sinks.jsonl import JsonlSettings, JsonlSink
from edge.sinks.mqtt import MqttSettings, MqttSink, TlsSettings, read_password

SINKS: dict[str, type[Sink]] = {JsonlSink.type_name: JsonlSink, MqttSink.type_name: MqttSink}

__all__ = [
    "BREAKDOWN_GROUPS",
    "HEALTH_SCHEMA",
    "SINKS",
    "STATUS_OFFLINE",
    "STATUS_ONLINE",
    "JsonlSettings",
    "JsonlSink",
    "MqttSettings",
    "MqttSink",
    "Sink",
    "SinkError",
    "TlsSettings",
    "build_health",
    "dumps",
    "pi_health",
    "read_password",
]
