"""MqttSink against a real mosquitto per test: order, status, Last Will, discovery, forget, passwords.

The faults (outages, dead links, SIGKILL, TLS, refused credentials) are in tests/faults/."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import HOST, Broker
from mqtt_clients import (
    COUNTS,
    DEVICE,
    STATUS,
    WAIT,
    Subscriber,
    mqtt_sink,
    read_line,
    run_helper,
    settings,
    sigkill,
    window,
)
from paho.mqtt.enums import CallbackAPIVersion

from edge.aggregator import AggregationConfig, Aggregator
from edge.attention import AttentionConfig
from edge.attributes import AttributesConfig
from edge.config import ConfigError
from edge.people import PeopleUpdate, PersonEnded
from edge.people_config import LineConfig, PeopleConfig
from edge.records import Attributes
from edge.secrets import TlsConfig, read_password
from edge.sinks import SinkError, build_health, pi_health
from edge.sinks.discovery import Announcements, DiscoveryDevice, PeopleSensors
from edge.sinks.forget import forget_device
from edge.sinks.jsonl import JsonlSink, JsonlSinkConfig
from edge.state_store import StateStore
from edge.tracker import TrackerUpdate, VisitorEnded
from edge.window import Attention as WindowAttention
from edge.window import Occupancy, People, Window


def test_windows_in_order_status_and_discovery(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    sub = subscribers(mqtt_broker.port, [f"edge/{DEVICE}/#"])
    spool = StateStore(tmp_path / "spool.db", 100)
    sink = mqtt_sink(mqtt_broker.port, spool, version="1.2.3")
    assert sink.wait_connected(WAIT)
    for seq in range(1, 7):
        sink.publish_window(window(seq))
    assert sub.wait_seqs(list(range(1, 7))) == list(range(1, 7))
    assert sink.wait_idle(WAIT) and spool.depth() == 0
    sink.publish_health(pi_health())
    assert sub.wait_for(lambda ms: any(m.topic == f"edge/{DEVICE}/health" for m in ms))

    # A late subscriber sees only retained topics: status online, health and discovery, never counts.
    late = subscribers(mqtt_broker.port, [f"edge/{DEVICE}/#", "homeassistant/#", "test/marker"])
    marker = mqtt.Client(CallbackAPIVersion.VERSION2)
    marker.connect(HOST, mqtt_broker.port)
    marker.loop_start()
    marker.publish("test/marker", "x", qos=1).wait_for_publish(WAIT)  # arrives after the retained ones
    marker.disconnect()
    marker.loop_stop()
    assert late.wait_for(lambda ms: any(m.topic == "test/marker" for m in ms))
    retained = {m.topic: m.payload for m in late.messages if m.retain}
    assert retained[STATUS] == "online"
    assert COUNTS not in retained
    health = json.loads(retained[f"edge/{DEVICE}/health"])
    assert health["device"] == DEVICE and health["spool"]["depth"] == 0 and "cpu_temp_c" in health
    configs = {t.split("/")[3]: json.loads(p) for t, p in retained.items() if t.startswith("homeassistant/")}
    assert {
        "visitors",
        "dwell_mean",
        "faces_peak",
        "gender_female",
        "gender_male",
        "age_0_17",
        "age_18_24",
        "age_65_plus",
        "expression_happy",
        "expression_neutral",
    } <= set(configs)
    assert all(
        t == f"homeassistant/sensor/{DEVICE}/{t.split('/')[3]}/config"
        for t in retained
        if t.startswith("homeassistant/")
    )
    female = configs["gender_female"]
    assert female["value_template"] == "{{ value_json.gender.female }}"
    assert configs["age_0_17"]["value_template"] == '{{ value_json.age["0-17"] }}'
    assert configs["dwell_mean"]["value_template"] == "{{ value_json.dwell_s.mean }}"
    assert female["state_topic"] == COUNTS and female["availability_topic"] == STATUS
    assert (female["payload_available"], female["payload_not_available"]) == ("online", "offline")
    assert female["unique_id"] == f"{DEVICE}_gender_female"
    assert female["device"] == {
        "identifiers": [DEVICE],
        "name": DEVICE,
        "manufacturer": "edge-face-analytics",
        "model": "Edge face analytics",
        "sw_version": "1.2.3",
    }
    # Home Assistant subscribes at QoS 1. Entity ids read well ("age_65_and_over", not "age_65") and are
    # the same whether Home Assistant honours default_entity_id (2025.10+) or derives it from the names.
    assert female["qos"] == 1 and "expire_after" not in female  # no window length given here
    assert configs["age_65_plus"]["name"] == "Age 65 and over"
    for config in configs.values():
        from_names = re.sub(r"[^a-z0-9]+", "_", f"{DEVICE} {config['name']}".lower()).strip("_")
        assert config["default_entity_id"] == f"sensor.{from_names}"
    assert configs["age_65_plus"]["default_entity_id"] == f"sensor.{DEVICE}_age_65_and_over"
    assert female["state_class"] == "measurement" and female["force_update"] is True
    today = configs["visitors_today"]
    assert today["state_class"] == "total_increasing" and today["value_template"] == "{{ value_json.today.visitors }}"
    storage = configs["storage"]  # says "failed" when the state store cannot be written
    assert storage["state_topic"] == f"edge/{DEVICE}/health" and storage["value_template"] == "{{ value_json.storage }}"
    assert storage["entity_category"] == "diagnostic" and "state_class" not in storage
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)

    sink.close()
    assert sub.wait_for(lambda ms: ms[-1].topic == STATUS and ms[-1].payload == "offline")
    spool.close()


def test_last_will_marks_a_killed_sink_offline(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    sub = subscribers(mqtt_broker.port, [STATUS])
    proc = run_helper(tmp_path, "connect", tmp_path / "spool.db", mqtt_broker.port, 0)
    try:
        assert read_line(proc) == "connected"
        assert sub.wait_for(lambda ms: bool(ms) and ms[-1].payload == "online")
    finally:
        sigkill(proc)
    assert sub.wait_for(lambda ms: ms[-1].payload == "offline"), [m.payload for m in sub.messages]


def test_missing_password_or_ca_file_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope" / "mqtt-password"
    with StateStore(tmp_path / "spool.db", 10) as spool:
        with pytest.raises(SinkError, match=re.escape(str(missing))):
            mqtt_sink(1, spool, username="u", password_file=missing)
        with pytest.raises(SinkError, match=re.escape(f"CA file {missing}")):
            mqtt_sink(1, spool, tls=TlsConfig(ca_file=missing))
        with pytest.raises(SinkError, match="sink.password_env.*NOPE_UNSET"):
            mqtt_sink(1, spool, username="u", password_env="NOPE_UNSET")
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "mqtt-password").write_text("pw\n")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))  # as systemd's LoadCredential= sets it
        assert read_password(settings(1, username="u", password_credential="mqtt-password"), "sink") == "pw"
        monkeypatch.setenv("MQTT_PW", "from-env")
        assert read_password(settings(1, username="u", password_env="MQTT_PW"), "sink") == "from-env"
        with pytest.raises(ConfigError, match="NOPE_UNSET"):
            read_password(settings(1, username="u", password_env="NOPE_UNSET"), "sink")


def test_jsonl_sink_and_registry(tmp_path: Path) -> None:
    out = tmp_path / "out" / "windows.jsonl"
    with JsonlSink(JsonlSinkConfig(path=str(out))) as sink:
        sink.publish_window(window(1))
        assert out.read_text() == json.dumps(window(1).to_payload(), separators=(",", ":")) + "\n"  # flushed per line
        sink.publish_window(window(2))
        sink.publish_health({"x": 1})  # not part of the window stream
    assert [json.loads(x)["seq"] for x in out.read_text().splitlines()] == [1, 2]
    assert build_health({"fps": 9.5}, device_id="d", now=0)["ts"] == "1970-01-01T00:00:00Z"


def retained_now(port: int, subscribers: Callable[..., Subscriber], filters: list[str]) -> dict[str, str]:
    """The retained, non-empty messages under ``filters`` right now (a marker ends the snapshot)."""
    marker_topic = f"test/marker/{len(filters)}/{time.monotonic_ns()}"
    sub = subscribers(port, [*filters, marker_topic])
    marker = mqtt.Client(CallbackAPIVersion.VERSION2)
    marker.connect(HOST, port)
    marker.loop_start()
    marker.publish(marker_topic, "x", qos=1).wait_for_publish(WAIT)
    marker.disconnect()
    marker.loop_stop()
    assert sub.wait_for(lambda ms: any(m.topic == marker_topic for m in ms))
    return {m.topic: m.payload for m in sub.messages if m.retain and m.payload}


def test_discovery_follows_the_config_and_clears_what_it_no_longer_produces(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    before = (("gender", "female"), ("gender", "male"), ("gender", "unknown"), ("age", "0-17"), ("age", "18+"))
    spool = StateStore(tmp_path / "spool.db", 100)
    with mqtt_sink(mqtt_broker.port, spool, version="1", cells=before, window_s=60) as sink:
        assert sink.wait_connected(WAIT)
    configs = [t for t in retained_now(mqtt_broker.port, subscribers, ["homeassistant/#"])]
    assert f"homeassistant/sensor/{DEVICE}/gender_female/config" in configs

    # The operator switches gender off and changes the age brackets.
    after = (("age", "0-29"), ("age", "30+"), ("age", "unknown"))
    sub = subscribers(mqtt_broker.port, ["homeassistant/#"])
    with mqtt_sink(mqtt_broker.port, spool, version="1", cells=after, window_s=60) as sink:
        assert sink.wait_connected(WAIT)
        gone = {f"homeassistant/sensor/{DEVICE}/{o}/config" for o in ("gender_female", "gender_male", "gender_unknown")}
        gone |= {f"homeassistant/sensor/{DEVICE}/{o}/config" for o in ("age_0_17", "age_18_plus")}
        assert sub.wait_for(lambda ms: gone <= {m.topic for m in ms if m.payload == ""}), sub.messages
        assert set(sink.cleared) == gone
    left = retained_now(mqtt_broker.port, subscribers, ["homeassistant/#"])
    objects = {t.split("/")[3] for t in left}
    assert objects == {
        "storage",
        "visitors",
        "visitors_today",
        "dwell_mean",
        "faces_peak",
        "age_0_29",
        "age_30_plus",
        "age_unknown",
    }
    config = json.loads(left[f"homeassistant/sensor/{DEVICE}/age_30_plus/config"])
    assert config["expire_after"] == 2 * 60 + 60 and config["qos"] == 1
    spool.close()


def test_forget_removes_the_device_from_the_broker(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    spool = StateStore(tmp_path / "spool.db", 100)
    other = StateStore(tmp_path / "other.db", 100)
    cells = (("gender", "female"),)
    with (
        mqtt_sink(mqtt_broker.port, spool, version="1", cells=cells) as sink,
        mqtt_sink(mqtt_broker.port, other, "cam2", version="1", cells=cells) as neighbour,
    ):
        assert sink.wait_connected(WAIT) and neighbour.wait_connected(WAIT)
        sink.publish_health({"fps": 1.0})
    filters = ["homeassistant/#", "edge/#"]
    before = retained_now(mqtt_broker.port, subscribers, filters)
    mine = {t for t in before if f"/{DEVICE}/" in t}
    assert f"edge/{DEVICE}/status" in mine and f"edge/{DEVICE}/health" in mine and len(mine) == 8

    cleared = forget_device(settings(mqtt_broker.port), DEVICE)
    assert set(cleared) == mine
    after = retained_now(mqtt_broker.port, subscribers, filters)
    assert not {t for t in after if f"/{DEVICE}/" in t}
    assert {t for t in after if "/cam2/" in t} == {t for t in before if "/cam2/" in t}  # the neighbour stays
    spool.close()
    other.close()


def test_forget_names_an_unreachable_broker(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(SinkError, match=f"{HOST}:{port}"):
        forget_device(settings(port), DEVICE, timeout_s=2.0)


def test_a_window_from_an_older_config_gets_no_entities_the_current_config_does_not_produce(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    # Gender is switched off now, but a window recovered from a checkpoint (or spooled) under the
    # old config still carries it.
    cells = tuple(("age", a) for a in ("0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+", "unknown"))
    cells += tuple(("expression", e) for e in ("neutral", "happy", "sad", "angry", "fearful", "disgusted"))
    cells += (("expression", "surprised"), ("expression", "unknown"))
    sub = subscribers(mqtt_broker.port, ["homeassistant/#", COUNTS])
    spool = StateStore(tmp_path / "spool.db", 100)
    with mqtt_sink(mqtt_broker.port, spool, version="1", cells=cells) as sink:
        assert sink.wait_connected(WAIT)
        sink.publish_window(window(1))  # has gender
        assert sub.wait_for(lambda ms: any(m.topic == COUNTS for m in ms))
        assert sink.wait_idle(WAIT)
    configs = {m.topic for m in sub.messages if m.topic.startswith("homeassistant/") and m.payload}
    assert configs and not {t for t in configs if "/gender_" in t}
    spool.close()


ATTENTION_OBJECTS = {"viewers", "viewer_rate", "attention_sum", "attention_median"}
GENDERS = (("gender", "female"), ("gender", "male"), ("gender", "unknown"))


def test_attention_entities_are_announced_while_attention_is_on_and_cleared_when_it_is_off(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    cells = (*GENDERS, ("age", "0-17"), ("age", "65+"), ("expression", "happy"))
    spool = StateStore(tmp_path / "spool.db", 100)
    with mqtt_sink(mqtt_broker.port, spool, version="1", cells=cells, window_s=60, attention=True) as sink:
        assert sink.wait_connected(WAIT)
    on = {
        t.split("/")[3]: json.loads(p)
        for t, p in retained_now(mqtt_broker.port, subscribers, ["homeassistant/#"]).items()
    }
    viewers_by = {"viewers_gender_female", "viewers_gender_male", "viewers_gender_unknown"}
    viewers_by |= {"viewers_age_0_17", "viewers_age_65_plus"}  # gender and age only: no viewers by expression
    assert ATTENTION_OBJECTS | viewers_by <= set(on) and not {o for o in on if o.startswith("viewers_expression")}
    viewers, rate, total, median = (on[o] for o in ("viewers", "viewer_rate", "attention_sum", "attention_median"))
    # Like Visitors and Mean dwell: one number a window, unavailable with the device, expiring after two windows.
    for config in (viewers, rate, total, median, on["viewers_age_65_plus"]):
        assert config["state_topic"] == COUNTS and config["availability_topic"] == STATUS and config["qos"] == 1
        assert config["state_class"] == "measurement" and config["force_update"] is True
        assert config["expire_after"] == on["visitors"]["expire_after"] == 2 * 60 + 60
        assert config["device"] == on["visitors"]["device"]
    assert viewers["value_template"] == "{{ value_json.viewers }}" and "unit_of_measurement" not in viewers
    assert rate["unit_of_measurement"] == "%" and "device_class" not in rate
    for config in (total, median):
        assert (config["unit_of_measurement"], config["device_class"]) == ("s", "duration")
    assert total["value_template"] == "{{ value_json.attention_s.sum }}"
    assert median["value_template"] == "{{ value_json.attention_s.median }}"
    assert on["viewers_age_65_plus"]["value_template"] == '{{ value_json.viewers_by.age["65+"] }}'
    assert on["viewers_age_65_plus"]["name"] == "Viewers age 65 and over"
    assert on["viewers_gender_female"]["default_entity_id"] == f"sensor.{DEVICE}_viewers_gender_female"
    assert (viewers["name"], total["name"], median["name"]) == ("Viewers", "Attention", "Median attention")

    # Attention switched off: its entities are cleared, the rest stays; a window spooled while it
    # was on (it carries viewers) brings none of them back.
    sub = subscribers(mqtt_broker.port, ["homeassistant/#"])
    gone = {f"homeassistant/sensor/{DEVICE}/{o}/config" for o in ATTENTION_OBJECTS | viewers_by}
    with mqtt_sink(mqtt_broker.port, spool, version="1", cells=cells, window_s=60) as sink:
        assert sink.wait_connected(WAIT)
        assert sub.wait_for(lambda ms: gone <= {m.topic for m in ms if m.payload == ""}), sub.messages
        assert set(sink.cleared) == gone
        sink.publish_window(attention_window(1))
        assert sink.wait_idle(WAIT)
    off = {t.split("/")[3] for t in retained_now(mqtt_broker.port, subscribers, ["homeassistant/#"])}
    assert off == set(on) - ATTENTION_OBJECTS - viewers_by
    assert {"visitors", "dwell_mean", "gender_female", "age_65_plus", "expression_happy"} <= off
    spool.close()


def attention_window(seq: int) -> Window:
    """``window(seq)`` as a device with attention on makes it: viewers, some of them suppressed."""
    return dataclasses.replace(
        window(seq),
        attention=WindowAttention(5, 0.714, 21.4, 3.5, {"gender": {"female": 5, "male": None}, "age": {"65+": None}}),
    )


NOON = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
_PLAIN = re.compile(r"\{\{ value_json((?:\.\w+|\[\"[^\"]*\"\])+) \}\}")
_PERCENT = re.compile(r"\{\{ \(value_json\.(\w+) \* 100\) \| round\(1\) if value_json\.\1 is number else none \}\}")
_MISSING = object()


def rendered(template: str, payload: Mapping[str, Any]) -> Any:
    """What Home Assistant renders for the two template forms discovery writes (tests/ha/check_ha.py
    checks it with Home Assistant's own Jinja): a payload path, where a null renders "None" (HA:
    unknown) and a missing key is a template warning (``_MISSING``); or a share as a percentage."""
    if m := _PERCENT.fullmatch(template):
        share = payload.get(m.group(1))
        return round(share * 100, 1) if isinstance(share, int | float) else None
    m = _PLAIN.fullmatch(template)
    assert m, f"a template of another form: {template}"
    value: Any = payload
    for a, b in re.findall(r"\.(\w+)|\[\"([^\"]*)\"\]", m.group(1)):
        if not isinstance(value, Mapping) or (a or b) not in value:
            return _MISSING
        value = value[a or b]
    return value


def aggregated(looked: list[float], k: int = 1, attention: AttentionConfig | None = None) -> dict[str, Any]:
    """The payload of a window in which one 30-year-old woman per entry of ``looked`` (her attention
    seconds) passed by, as the daemon's Aggregator makes it."""
    a = Aggregator(AggregationConfig(min_cell=k), AttributesConfig(), attention or AttentionConfig(), DEVICE, "s")
    people = tuple(VisitorEnded(6.0, Attributes(gender="female", age=30.0), attention_s=t) for t in looked)
    a.observe(TrackerUpdate(ended=people), NOON)
    (w,) = a.tick(NOON + 60)
    return w.to_payload()


def test_attention_templates_give_the_windows_numbers_and_unknown_where_suppressed() -> None:
    device = DiscoveryDevice(DEVICE, DEVICE, "1", "homeassistant", COUNTS, STATUS, 60)
    cells = (*GENDERS, ("age", "25-34"), ("age", "65+"))
    configs = Announcements(device, cells, attention=True).at_connect()
    templates = {c["unique_id"].removeprefix(f"{DEVICE}_"): c["value_template"] for _, c in configs}

    def shown(payload: dict[str, Any], *objects: str) -> list[Any]:
        return [rendered(templates[o], payload) for o in objects]

    figures = ("viewers", "viewer_rate", "attention_sum", "attention_median")
    by = ("viewers_gender_female", "viewers_gender_male", "viewers_age_25_34", "viewers_age_65_plus")
    # 3 of 5 looked for at least min_s (1 s): 0.6 -> 60 %, 1 + 2.5 + 4 s, median 2.5 s.
    seen = aggregated([0.0, 0.99, 1.0, 2.5, 4.0])
    assert shown(seen, *figures) == [3, 60.0, 7.5, 2.5]
    assert shown(seen, *by) == [3, 0, 3, 0]
    assert shown(aggregated([0.0, 1.5, 2.0]), "viewer_rate") == [66.7]  # 0.667, not 66.70000000000002
    # Nobody looked: 0 viewers, 0 %, 0 s; no median (unknown).
    assert shown(aggregated([0.0, 0.5, 0.0]), *figures) == [0, 0.0, 0.0, None]
    # 8 viewers of 10 would tell that 2 did not look (k 5): every viewer figure is null, shown as unknown.
    withheld = aggregated([2.0] * 8 + [0.0] * 2, k=5)
    assert shown(withheld, *figures, *by) == [None] * 8
    assert shown(withheld, "gender_female", "dwell_mean") == [10, 6.0]  # the visitors' own figures stay
    # A window without attention (switched off, or a schema 2 device): the share renders unknown,
    # the paths are missing (their entities exist only while the device says attention is on).
    off = aggregated([2.0], attention=AttentionConfig(enabled=False))
    assert shown(off, "viewer_rate") == [None] and shown(off, "viewers", "attention_sum") == [_MISSING] * 2


PEOPLE_OBJECTS = {"people", "people_with_face", "passers_by", "stayers"}
LINE_OBJECTS = {"crossings_in", "crossings_out"}


def zone_objects(*zones: str) -> set[str]:
    return {f"zone_{z}_{figure}" for z in zones for figure in ("peak", "mean")}


def config_topics(objects: set[str]) -> set[str]:
    return {f"homeassistant/sensor/{DEVICE}/{o}/config" for o in objects}


# The cells ``window(seq)`` carries, so that the windows published here bring no others.
WINDOW_CELLS = (*GENDERS[:2], ("age", "0-17"), ("age", "18-24"), ("age", "65+"), ("expression", "happy"))
WINDOW_CELLS += (("expression", "neutral"),)


def people_window(seq: int) -> Window:
    """``window(seq)`` as a device counting people across a line and in two zones makes it."""
    zones = {"aisle": Occupancy(3, 1.25), "2nd_floor": Occupancy(None, None)}
    return dataclasses.replace(window(seq), people=People(12, 5, 9, 3, (4, None), zones))


def test_people_entities_follow_people_counting_its_line_and_its_zones(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    spool = StateStore(tmp_path / "spool.db", 100)
    zones = ("aisle", "2nd_floor")  # a zone name that is no Jinja identifier: subscripted
    kw: dict[str, Any] = {"version": "1", "window_s": 60, "cells": WINDOW_CELLS}
    with mqtt_sink(mqtt_broker.port, spool, **kw, people=True, line=True, zones=zones) as sink:
        assert sink.wait_connected(WAIT)
    on = {
        t.split("/")[3]: json.loads(p)
        for t, p in retained_now(mqtt_broker.port, subscribers, ["homeassistant/#"]).items()
    }
    mine = PEOPLE_OBJECTS | LINE_OBJECTS | zone_objects(*zones)
    assert mine <= set(on) and not ATTENTION_OBJECTS & set(on)
    # Like Visitors: a count a window without a unit, unavailable with the device, expiring after two windows.
    for obj in mine:
        config = on[obj]
        assert config["state_topic"] == COUNTS and config["availability_topic"] == STATUS and config["qos"] == 1
        assert config["state_class"] == "measurement" and config["force_update"] is True
        assert config["expire_after"] == on["visitors"]["expire_after"] == 2 * 60 + 60
        assert config["device"] == on["visitors"]["device"]
        assert "unit_of_measurement" not in config and "device_class" not in config
    assert {o: on[o]["name"] for o in sorted(mine)} == {
        "crossings_in": "Crossings in",
        "crossings_out": "Crossings out",
        "passers_by": "Passers-by",
        "people": "People",
        "people_with_face": "People with a face",
        "stayers": "Stayers",
        "zone_2nd_floor_mean": "2nd_floor occupancy mean",
        "zone_2nd_floor_peak": "2nd_floor occupancy peak",
        "zone_aisle_mean": "aisle occupancy mean",
        "zone_aisle_peak": "aisle occupancy peak",
    }
    assert {o: on[o]["value_template"] for o in ("people", "crossings_in", "crossings_out", "zone_aisle_peak")} == {
        "people": "{{ value_json.people }}",
        "crossings_in": "{{ value_json.crossings.in }}",
        "crossings_out": "{{ value_json.crossings.out }}",
        "zone_aisle_peak": "{{ value_json.zones.aisle.peak }}",
    }
    assert on["zone_2nd_floor_mean"]["value_template"] == '{{ value_json.zones["2nd_floor"].mean }}'
    assert on["people_with_face"]["default_entity_id"] == f"sensor.{DEVICE}_people_with_a_face"
    assert on["passers_by"]["default_entity_id"] == f"sensor.{DEVICE}_passers_by"
    assert on["zone_2nd_floor_peak"]["default_entity_id"] == f"sensor.{DEVICE}_2nd_floor_occupancy_peak"

    # The line and a zone removed: their entities are cleared, the rest stays; a window spooled
    # before (it carries crossings and that zone) brings none of them back.
    sub = subscribers(mqtt_broker.port, ["homeassistant/#"])
    gone = config_topics(LINE_OBJECTS | zone_objects("2nd_floor"))
    with mqtt_sink(mqtt_broker.port, spool, **kw, people=True, zones=("aisle",)) as sink:
        assert sink.wait_connected(WAIT)
        assert sub.wait_for(lambda ms: gone <= {m.topic for m in ms if m.payload == ""}), sub.messages
        assert set(sink.cleared) == gone
        sink.publish_window(people_window(1))
        assert sink.wait_idle(WAIT)
    left = {t.split("/")[3] for t in retained_now(mqtt_broker.port, subscribers, ["homeassistant/#"])}
    assert left == set(on) - LINE_OBJECTS - zone_objects("2nd_floor")

    # People counting off: every people entity goes, the visitors' stay.
    sub = subscribers(mqtt_broker.port, ["homeassistant/#"])
    gone = config_topics(PEOPLE_OBJECTS | zone_objects("aisle"))
    with mqtt_sink(mqtt_broker.port, spool, **kw) as sink:
        assert sink.wait_connected(WAIT)
        assert sub.wait_for(lambda ms: gone <= {m.topic for m in ms if m.payload == ""}), sub.messages
        assert set(sink.cleared) == gone
        sink.publish_window(people_window(2))
        assert sink.wait_idle(WAIT)
    off = {t.split("/")[3] for t in retained_now(mqtt_broker.port, subscribers, ["homeassistant/#"])}
    assert off == set(on) - mine and {"storage", "visitors", "visitors_today", "dwell_mean", "faces_peak"} <= off
    spool.close()


DOOR = LineConfig(start=(0.0, 0.5), end=(1.0, 0.5))
ZONES = (
    ("aisle", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))),
    ("2nd_floor", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0))),
)


def counted(persons: list[PersonEnded], frames: list[tuple[int, ...]], k: int = 1, **people: Any) -> dict[str, Any]:
    """The payload of a window in which ``persons`` ended and the person detector ran on ``frames``
    (the people standing in each of ``ZONES``), as the daemon's Aggregator makes it."""
    config = PeopleConfig(**{"line": DOOR, "zones": ZONES, **people})
    a = Aggregator(
        AggregationConfig(min_cell=k), AttributesConfig(), AttentionConfig(enabled=False), DEVICE, "s", config
    )
    for i, zones in enumerate(frames):
        a.observe(TrackerUpdate(), NOON + i, PeopleUpdate(zones=zones))
    a.observe(TrackerUpdate(), NOON + 30, PeopleUpdate(ended=tuple(persons)))
    (w,) = a.tick(NOON + 60)
    return w.to_payload()


def test_people_templates_give_the_windows_numbers_and_unknown_where_suppressed() -> None:
    device = DiscoveryDevice(DEVICE, DEVICE, "1", "homeassistant", COUNTS, STATUS, 60)
    people = PeopleSensors(line=True, zones=tuple(name for name, _ in ZONES))
    configs = Announcements(device, (), people=people).at_connect()
    templates = {c["unique_id"].removeprefix(f"{DEVICE}_"): c["value_template"] for _, c in configs}

    def shown(payload: dict[str, Any], *objects: str) -> list[Any]:
        return [rendered(templates[o], payload) for o in objects]

    splits = ("people", "people_with_face", "passers_by", "stayers", "crossings_in", "crossings_out")
    zones = tuple(sorted(zone_objects("aisle", "2nd_floor")))  # 2nd_floor, then aisle; mean before peak
    # 3 passers-by without a face coming in, 2 stayers (20 s >= min_dwell_s 10 s) with a face going out.
    persons = [PersonEnded(4.0, False, ins=1)] * 3 + [PersonEnded(20.0, True, outs=1)] * 2
    frames = [(2, 0), (4, 1)]
    assert shown(counted(persons, frames), *splits) == [5, 2, 3, 2, 3, 2]
    assert shown(counted(persons, frames), *zones) == [0.5, 1, 3.0, 4]
    # k 3: both sides of 2/3 splits withheld, 2 crossings out too, and a zone whose peak is 1.
    withheld = counted(persons, frames, k=3)
    assert shown(withheld, *splits) == [5, None, None, None, 3, None]
    assert shown(withheld, *zones) == [None, None, 3.0, 4]
    # Nobody: zeros, not unknown (zero is safe).
    assert shown(counted([], [(0, 0)]), *splits, *zones) == [0] * 6 + [0.0, 0, 0.0, 0]
    # Without a line or zones, and with people counting off, the keys are missing: those entities
    # exist only while the device's config produces them.
    plain = counted(persons, [], line=None, zones=())
    assert shown(plain, "people", "crossings_in", "zone_aisle_peak") == [5, _MISSING, _MISSING]
    assert shown(counted(persons, [], enabled=False), "people", "stayers") == [_MISSING] * 2
