"""Configuration: the example parses, defaults fill in, and every mistake is named precisely."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import edge
from edge.config import ConfigError
from edge.settings import (
    AggregationConfig,
    AttributesConfig,
    Config,
    DetectorConfig,
    ModelsConfig,
    RuntimeConfig,
    TrackingConfig,
    load_config,
    parse_config,
)
from edge.sinks import SINK_PLUGINS, SINK_TYPES
from edge.sinks.jsonl import JsonlSinkConfig
from edge.sinks.mqtt import MqttSinkConfig
from edge.sources import SOURCE_PLUGINS, SOURCE_TYPES
from edge.sources.file import FileSourceConfig
from edge.sources.picamera2 import Picamera2SourceConfig
from edge.sources.v4l2 import V4l2SourceConfig

EXAMPLE = Path(edge.__file__).parent / "config.example.yaml"
MINIMAL: dict[str, Any] = {"device_id": "lobby-1", "source": {"type": "picamera2"}}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` with top-level keys replaced."""
    out = dict(base)
    out.update(changes)
    return out


def error_for(mapping: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(mapping)
    return info.value


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------- the example


def test_example_config_parses() -> None:
    config = load_config(EXAMPLE)
    assert config.device_id == "lobby-1"
    assert isinstance(config.source, Picamera2SourceConfig)
    assert isinstance(config.sink, MqttSinkConfig)
    assert config.sink.topic_prefix == "edge/lobby-1/"
    assert config.attributes.ethnicity is False


def _schema_keys(cls: type, seen: set[type]) -> set[str]:
    keys: set[str] = set()
    if cls in seen:
        return keys
    seen.add(cls)
    for f in dataclasses.fields(cls):
        keys.add(f.name)
        if "section" in f.metadata:
            keys |= _schema_keys(f.metadata["section"], seen)
        for option in f.metadata.get("registry", {}).values():
            keys |= _schema_keys(option, seen)
    return keys


def test_example_mentions_every_key() -> None:
    """Keys added to the schema must be documented in the example (active or commented)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = sorted(k for k in _schema_keys(Config, set()) if not re.search(rf"\b{k}:", text))
    assert missing == []
    for kind in [*SOURCE_TYPES, *SINK_TYPES]:
        assert re.search(rf"type: {kind}\b", text), kind


def test_every_alternative_block_of_the_example_takes_the_place_of_the_active_one() -> None:
    """The example's alternatives are whole commented blocks (``# source:`` ... up to a blank line):
    each, swapped for the active block, gives a valid config with every key it shows, and together
    they cover every source and sink type."""
    text = EXAMPLE.read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    blocks = re.findall(r"^# (source|sink):[^\n]*\n((?:#   [^\n]*\n)+)", text, re.M)
    types = {"source": {type(load_config(EXAMPLE).source).type}, "sink": {type(load_config(EXAMPLE).sink).type}}
    for section, body in blocks:
        values = yaml.safe_load("\n".join(line[4:] for line in body.splitlines()))
        config = parse_config({**doc, section: values})
        chosen = getattr(config, section)
        assert type(chosen).type == values["type"]
        for key, value in values.items():  # every key it shows is taken as written (none is stray)
            if key != "type" and not isinstance(value, dict):
                got = getattr(chosen, key)
                assert (got == value) if isinstance(value, (int, float)) else str(got) == str(value), (section, key)
        types[section].add(values["type"])
    assert types == {"source": set(SOURCE_TYPES), "sink": set(SINK_TYPES)}


def test_example_minimal_block_parses() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    block = re.search(r"#   device_id:.*?(?=\n#\n)", text, re.S)
    assert block is not None
    minimal = "\n".join(line[2:] for line in block.group(0).splitlines())
    config = parse_config(yaml.safe_load(minimal))
    assert config.source == Picamera2SourceConfig()


# ----------------------------------------------------------------- defaults


def test_minimal_config_gets_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = parse_config(MINIMAL)
    assert config.site == "default"
    assert config.source == Picamera2SourceConfig()
    assert (config.source.width, config.source.height, config.source.fps, config.source.camera) == (640, 480, 15, 0)
    assert (config.source.reopen_backoff_s.initial, config.source.reopen_backoff_s.max) == (1.0, 30.0)
    assert config.models == ModelsConfig()
    assert config.models.dir == Path(edge.__file__).parent.parent / "models"
    assert (config.models.variant, config.models.detector_input) == ("int8", 512)
    assert config.runtime == RuntimeConfig(backend="auto", threads=None)
    assert config.detector == DetectorConfig(score_threshold=0.5, weak_threshold=0.25, min_face_px=20, tile_interval=3)
    assert config.tracking == TrackingConfig(
        iou_threshold=0.3, max_missed_s=1.0, min_visitor_s=1.0, min_hits=3, best_observations=3
    )
    assert config.aggregation == AggregationConfig(window_s=60, min_cell=5, age_brackets=(0, 18, 25, 35, 45, 55, 65))
    assert config.sink == JsonlSinkConfig(path="-") and config.sink.to_stdout
    assert config.state_dir == tmp_path / ".local/state/edge"
    assert config.log_level == "INFO"


def test_ethnicity_is_opt_in() -> None:
    assert parse_config(MINIMAL).attributes == AttributesConfig(
        age=True, gender=True, expression=True, ethnicity=False, min_face_px=36, min_gender_score=0.8
    )
    assert parse_config(with_(MINIMAL, attributes={"ethnicity": True})).attributes.ethnicity is True


def test_state_dir_from_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edge:/var/lib/other")
    config = parse_config(with_(MINIMAL, sink={"type": "mqtt"}))
    assert config.state_dir == Path("/var/lib/edge")


def test_mqtt_defaults_derive_from_device_and_state_dir(tmp_path: Path) -> None:
    config = parse_config(with_(MINIMAL, state_dir=str(tmp_path), sink={"type": "mqtt"}))
    sink = config.sink
    assert isinstance(sink, MqttSinkConfig)
    assert (sink.host, sink.port, sink.protocol, sink.keepalive, sink.qos) == ("localhost", 1883, "5", 60, 1)
    assert sink.topic_prefix == "edge/lobby-1/"
    assert sink.spool.max_windows == 10080
    assert sink.tls is None and sink.health_interval_s == 30
    assert sink.discovery.enabled and sink.discovery.prefix == "homeassistant"


def test_source_types_and_normalisation() -> None:
    v4l2 = parse_config(with_(MINIMAL, source={"type": "v4l2", "device": "/dev/video2"})).source
    assert v4l2 == V4l2SourceConfig(device="/dev/video2")
    assert parse_config(with_(MINIMAL, source={"type": "v4l2", "device": "1"})).source.device == 1
    rtsp = parse_config(with_(MINIMAL, source={"type": "rtsp", "url": "rtsp://cam.local/s1"})).source
    assert rtsp.type == "rtsp"
    file = parse_config(with_(MINIMAL, source={"type": "file", "path": "clip.mp4"})).source
    assert file == FileSourceConfig(path=Path("clip.mp4"), loop=False, realtime=True)
    mqtt = parse_config(
        with_(MINIMAL, sink={"type": "mqtt", "protocol": "3.1.1", "tls": True, "topic_prefix": "shop/door"})
    )
    assert mqtt.sink.protocol == "3.1.1" and mqtt.sink.tls is not None and mqtt.sink.tls.ca_file is None
    assert mqtt.sink.topic_prefix == "shop/door/"
    assert parse_config(with_(MINIMAL, log_level="debug")).log_level == "DEBUG"


def test_relative_paths_are_taken_from_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: a\nsource: {type: file, path: clips/a.mp4}\nstate_dir: state\n")
    config = load_config(path)
    assert config.source.path == tmp_path / "clips/a.mp4"
    assert config.state_dir == tmp_path / "state"


# ----------------------------------------------------------------- errors


def test_unknown_key_names_path_and_suggests() -> None:
    err = error_for(with_(MINIMAL, aggregation={"windw_s": 60}))
    assert err.path == "aggregation.windw_s"
    assert "did you mean 'window_s'?" in str(err)
    assert str(err).startswith("config error: aggregation.windw_s: expected one of the keys window_s, min_cell")


def test_unknown_top_level_key_and_type_key_suggest() -> None:
    assert "did you mean 'tracking'?" in str(error_for(with_(MINIMAL, trakcing={})))
    err = error_for(with_(MINIMAL, source={"type": "file", "pth": "x.mp4", "path": "x.mp4"}))
    assert err.path == "source.pth" and "did you mean 'path'?" in str(err)
    err = error_for(with_(MINIMAL, source={"type": "v4l"}))
    assert err.path == "source.type"
    assert "expected one of file, picamera2, rtsp, v4l2" in str(err) and "did you mean 'v4l2'?" in str(err)


def test_wrong_type_names_path_value_and_expectation() -> None:
    err = error_for(with_(MINIMAL, aggregation={"window_s": "abc"}))
    assert (err.path, err.value) == ("aggregation.window_s", "abc")
    assert str(err) == (
        "config error: aggregation.window_s: expected a positive whole number of seconds "
        "that divides 86400 (e.g. 60, 300, 900, 3600), got 'abc'"
    )


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"device_id": "lobby 1"}, "device_id"),
        ({"device_id": 12}, "device_id"),
        ({"device_id": "x" * 65}, "device_id"),
        ({"source": {"type": "picamera2", "fps": 0}}, "source.fps"),
        ({"source": {"type": "picamera2", "width": True}}, "source.width"),
        ({"source": {"type": "v4l2", "device": "video0"}}, "source.device"),
        ({"source": {"type": "rtsp", "url": "ftp://cam/s"}}, "source.url"),
        ({"source": {"type": "rtsp"}}, "source.url"),
        ({"source": {"type": "file"}}, "source.path"),
        ({"source": {"type": "file", "path": "a.mp4", "loop": "yes"}}, "source.loop"),
        (
            {"source": {"type": "picamera2", "reopen_backoff_s": {"initial": 5, "max": 1}}},
            "source.reopen_backoff_s.max",
        ),
        ({"source": {"type": "picamera2", "reopen_backoff_s": {"initial": -1}}}, "source.reopen_backoff_s.initial"),
        ({"source": "picamera2"}, "source"),
        ({"models": {"variant": "int4"}}, "models.variant"),
        ({"models": {"detector_input": 416}}, "models.detector_input"),
        ({"runtime": {"threads": 0}}, "runtime.threads"),
        ({"runtime": {"backend": "onnx"}}, "runtime.backend"),
        ({"runtime": {"threads": 100000}}, "runtime.threads"),
        (
            {"source": {"type": "file", "path": "x.avi", "reopen_backoff_s": {"initial": 1e300}}},
            "source.reopen_backoff_s.initial",
        ),
        ({"site": "lobby \udc80"}, "site"),
        ({"sink": {"type": "mqtt", "topic_prefix": "$SYS/edge/"}}, "sink.topic_prefix"),
        ({"detector": {"score_threshold": 1.5}}, "detector.score_threshold"),
        ({"detector": {"min_face_px": -1}}, "detector.min_face_px"),
        ({"attributes": {"age": 1}}, "attributes.age"),
        ({"attributes": {"min_gender_score": 1.2}}, "attributes.min_gender_score"),
        ({"attributes": {"views": 3}}, "attributes.views"),
        ({"tracking": {"iou_threshold": 0}}, "tracking.iou_threshold"),
        ({"tracking": {"min_hits": 2.5}}, "tracking.min_hits"),
        ({"tracking": "fast"}, "tracking"),
        ({"aggregation": {"window_s": 0}}, "aggregation.window_s"),
        ({"aggregation": {"window_s": 7}}, "aggregation.window_s"),
        ({"aggregation": {"min_cell": 0}}, "aggregation.min_cell"),
        ({"aggregation": {"age_brackets": [18, 25]}}, "aggregation.age_brackets"),
        ({"aggregation": {"age_brackets": [0, 25, 25]}}, "aggregation.age_brackets"),
        ({"sink": {"type": "kafka"}}, "sink.type"),
        ({"sink": {"type": "mqtt", "port": 70000}}, "sink.port"),
        ({"sink": {"type": "mqtt", "protocol": 3}}, "sink.protocol"),
        ({"sink": {"type": "mqtt", "qos": 3}}, "sink.qos"),
        ({"sink": {"type": "mqtt", "topic_prefix": "edge/+/"}}, "sink.topic_prefix"),
        ({"sink": {"type": "mqtt", "topic_prefix": "e" * 70000}}, "sink.topic_prefix"),
        ({"sink": {"type": "mqtt", "topic_prefix": "edge/\udcff/"}}, "sink.topic_prefix"),
        ({"sink": {"type": "mqtt", "keepalive": 70000}}, "sink.keepalive"),
        ({"sink": {"type": "mqtt", "host": "broker..local"}}, "sink.host"),
        ({"sink": {"type": "mqtt", "tls": {"cert_file": "c.pem"}}}, "sink.tls.key_file"),
        ({"sink": {"type": "mqtt", "username": "u", "password_env": "A", "password_file": "/p"}}, "sink.password_env"),
        ({"sink": {"type": "mqtt", "password_env": "A"}}, "sink.username"),
        ({"sink": {"type": "mqtt", "spool": {"max_windows": 0}}}, "sink.spool.max_windows"),
        ({"sink": {"type": "jsonl", "host": "x"}}, "sink.host"),
        ({"log_level": "TRACE"}, "log_level"),
        ({"site": "s" * 1_000_000}, "site"),  # a megabyte in every window
        ({"sink": {"type": "mqtt", "username": "u" * 257}}, "sink.username"),
    ],
)
def test_bad_values_name_their_key(change: dict[str, Any], path: str) -> None:
    err = error_for(with_(MINIMAL, **change))
    assert [e.path for e in err.errors] == [path], str(err)
    assert str(err).startswith(f"config error: {path}: expected ")


def test_a_spool_path_is_refused_because_the_spool_lives_in_the_state_store() -> None:
    """Two configs could name one spool file and publish each other's windows; the spool now lives
    in the state directory, which one daemon locks."""
    err = error_for(with_(MINIMAL, sink={"type": "mqtt", "spool": {"path": "/var/lib/edge/spool.sqlite3"}}))
    assert [e.path for e in err.errors] == ["sink.spool.path"], str(err)
    assert "state.sqlite3" in str(err) and "remove this key" in str(err)


def test_missing_source_is_an_error() -> None:
    err = error_for({"device_id": "lobby-1"})
    assert err.path == "source"
    assert str(err) == (
        "config error: source: expected a mapping with 'type: <file | picamera2 | rtsp | v4l2>', "
        "got nothing (the key is required)"
    )
    assert error_for({"source": {"type": "picamera2"}}).path == "device_id"


def test_clear_text_password_is_rejected_without_echoing_it() -> None:
    err = error_for(with_(MINIMAL, sink={"type": "mqtt", "username": "u", "password": "hunter2"}))
    message = str(err)
    assert err.path == "sink.password"
    for alternative in ("password_file", "password_env", "password_credential"):
        assert alternative in message
    assert "hunter2" not in message and "hunter2" not in repr(err.value)


def test_all_errors_are_reported_together() -> None:
    err = error_for(
        {
            "device_id": "bad id",
            "source": {"type": "file"},
            "tracking": {"min_hits": 0},
            "sink": {"type": "mqtt", "port": "x"},
        }
    )
    assert [e.path for e in err.errors] == ["device_id", "source.path", "tracking.min_hits", "sink.port"]
    lines = str(err).splitlines()
    assert lines[0] == "config error: 4 problems:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [e.path for e in err.errors]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected a mapping with at least device_id and source, got None"):
        load_config(write(tmp_path, "# nothing but a comment\n"))


# ----------------------------------------------------------------- files


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: a\nsource:\n  type: file\n   path: x: y\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.path, err.line) == (str(path), 4)
    assert str(err).startswith(f"config error: {path}: expected valid YAML, got ")
    assert "(line 4, column" in str(err)


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(
        ConfigError,
        match=re.escape(f"{path}: expected a readable UTF-8 YAML config file, got No such file or directory"),
    ):
        load_config(path)


def test_file_errors_carry_line_numbers_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\n".join(
            [
                "device_id: lobby-1",  # 1
                "source:",  # 2
                "  type: picamera2",  # 3
                "  fsp: 10",  # 4
                "aggregation:",  # 5
                "  window_s: abc",  # 6
                "sink:",  # 7
                "  type: mqtt",  # 8
                "  password: s3cret",  # 9
                "tracking: {min_hits: 2}",  # 10
                "tracking: {min_hits: 3}",  # 11
            ]
        )
        + "\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert [(e.path, e.line) for e in err.errors] == [
        ("source.fsp", 4),
        ("aggregation.window_s", 6),
        ("sink.password", 9),
        ("tracking", 11),
    ]
    text = str(err)
    assert text.splitlines()[0] == f"config error: 4 problems in {path}:"
    assert "source.fsp: expected one of the keys for source type 'picamera2': " in text
    assert "got unknown key 'fsp' (did you mean 'fps'?) (line 4)" in text
    assert "tracking: expected each key once, got a duplicate key (line 11)" in text
    assert "s3cret" not in text


def test_single_file_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: lobby-1\nsource: {type: picamera2}\naggregation:\n  window_s: abc\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).endswith(f"got 'abc' ({path}, line 4)")


# ----------------------------------------------------------------- secrets


def test_mqtt_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "broker.pw"
    secret.write_text("from-file\n", encoding="utf-8")
    sink = parse_config(with_(MINIMAL, sink={"type": "mqtt", "username": "u", "password_file": str(secret)})).sink
    assert sink.password() == "from-file"
    assert "from-file" not in repr(sink)

    monkeypatch.setenv("EDGE_MQTT_PASSWORD", "from-env")
    sink = parse_config(
        with_(MINIMAL, sink={"type": "mqtt", "username": "u", "password_env": "EDGE_MQTT_PASSWORD"})
    ).sink
    assert sink.password() == "from-env"
    monkeypatch.delenv("EDGE_MQTT_PASSWORD")
    with pytest.raises(ConfigError, match=r"sink.password_env: .*EDGE_MQTT_PASSWORD \(not set\)"):
        sink.password()

    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "mqtt-password").write_text("from-systemd", encoding="utf-8")
    sink = parse_config(
        with_(MINIMAL, sink={"type": "mqtt", "username": "u", "password_credential": "mqtt-password"})
    ).sink
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        sink.password()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    assert sink.password() == "from-systemd"

    assert parse_config(with_(MINIMAL, sink={"type": "mqtt"})).sink.password() is None


def test_each_plugin_module_is_found_and_declares_a_frozen_section() -> None:
    """The registries are derived from the plugin modules (one file per backend): every module of
    edge/sources and edge/sinks that ends with PLUGIN is found, under its section's type."""
    for package, plugins in (("sources", SOURCE_PLUGINS), ("sinks", SINK_PLUGINS)):
        folder = Path(edge.__file__).parent / package
        declared = {p.stem for p in folder.glob("*.py") if re.search(r"^PLUGIN = Plugin\(", p.read_text(), re.M)}
        assert declared == set(plugins), package
        for kind, plugin in plugins.items():
            assert plugin.config.type == kind
            assert dataclasses.is_dataclass(plugin.config) and plugin.config.__dataclass_params__.frozen
