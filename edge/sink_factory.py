"""Build the configured sink (and its spool) from the typed config.

A new sink type is a config class in ``edge.config`` plus one builder here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from edge import __version__
from edge.config import Config, JsonlSinkConfig, MqttSinkConfig, SinkConfig
from edge.sinks import JsonlSettings, JsonlSink, MqttSettings, MqttSink, Sink, TlsSettings
from edge.state_store import StateStore

Cells = Mapping[str, tuple[str, ...]]  # breakdown -> the cells the config produces


def _jsonl(config: Config, sink: SinkConfig, cells: Cells, store: StateStore) -> Sink:
    assert isinstance(sink, JsonlSinkConfig)
    return JsonlSink(JsonlSettings(path=sink.path), spool=store)


def mqtt_settings(config: Config, sink: MqttSinkConfig, cells: Cells) -> MqttSettings:
    """The MQTT sink's settings from the config (also used by ``edge forget``)."""
    tls = None
    if sink.tls is not None:
        tls = TlsSettings(
            ca_file=sink.tls.ca_file,
            cert_file=sink.tls.cert_file,
            key_file=sink.tls.key_file,
            insecure=sink.tls.insecure,
        )
    return MqttSettings(
        host=sink.host,
        port=sink.port,
        protocol=sink.protocol,
        read_back=sink.read_back,
        keepalive=sink.keepalive,
        topic_prefix=sink.topic_prefix,
        qos=sink.qos,
        tls=tls,
        username=sink.username,
        password_file=sink.password_file,
        password_env=sink.password_env,
        password_credential=sink.password_credential,
        discovery=sink.discovery.enabled,
        discovery_prefix=sink.discovery.prefix,
        discovery_cells=tuple((group, label) for group, labels in cells.items() for label in labels),
        window_s=config.aggregation.window_s,
    )


def _mqtt(config: Config, sink: SinkConfig, cells: Cells, store: StateStore) -> Sink:
    assert isinstance(sink, MqttSinkConfig)
    return MqttSink(mqtt_settings(config, sink, cells), store, config.device_id, __version__)


SINK_BUILDERS: dict[str, Callable[[Config, SinkConfig, Cells, StateStore], Sink]] = {
    "jsonl": _jsonl,
    "mqtt": _mqtt,
}


def build_sink(config: Config, cells: Cells, store: StateStore) -> Sink:
    """The configured sink, delivering from ``store``'s spool; ``cells`` are the breakdown cells the
    config produces (dashboards get exactly those)."""
    return SINK_BUILDERS[type(config.sink).type](config, config.sink, cells, store)
