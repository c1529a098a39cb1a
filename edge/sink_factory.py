"""Build the configured sink (and its spool) from the typed config.

A new sink type is a config class in ``edge.config`` plus one builder here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge import __version__
from edge.config import Config, JsonlSinkConfig, MqttSinkConfig, SinkConfig
from edge.sinks import JsonlSettings, JsonlSink, MqttSettings, MqttSink, Sink, TlsSettings
from edge.spool import Spool


def _jsonl(config: Config, sink: SinkConfig) -> tuple[Sink, Spool | None]:
    assert isinstance(sink, JsonlSinkConfig)
    return JsonlSink(JsonlSettings(path=sink.path)), None


def _mqtt(config: Config, sink: SinkConfig) -> tuple[Sink, Spool | None]:
    assert isinstance(sink, MqttSinkConfig)
    tls = None
    if sink.tls is not None:
        tls = TlsSettings(
            ca_file=sink.tls.ca_file,
            cert_file=sink.tls.cert_file,
            key_file=sink.tls.key_file,
            insecure=sink.tls.insecure,
        )
    settings = MqttSettings(
        host=sink.host,
        port=sink.port,
        protocol=sink.protocol,
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
    )
    Path(sink.spool.path).parent.mkdir(parents=True, exist_ok=True)
    spool = Spool(sink.spool.path, sink.spool.max_windows)
    return MqttSink(settings, spool, config.device_id, __version__), spool


SINK_BUILDERS: dict[str, Callable[[Config, SinkConfig], tuple[Sink, Spool | None]]] = {
    "jsonl": _jsonl,
    "mqtt": _mqtt,
}


def build_sink(config: Config) -> tuple[Sink, Spool | None]:
    return SINK_BUILDERS[type(config.sink).type](config, config.sink)
