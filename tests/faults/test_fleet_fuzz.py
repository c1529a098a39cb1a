"""Fleet ingest under hostile input: generated messages of every kind (window, status, health),
random bytes, random JSON and valid messages with one part changed, through a real mosquitto into a
real PostgreSQL, interleaved with valid windows. The collector never stalls or exits; every valid
window is stored once; every message ends stored, a duplicate, a device status or in ``rejected``
with a reason."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest
from fastjsonschema import JsonSchemaException
from fleet_parts import REPO, fleet_config, health_payload, window_payload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from mqtt_broker import HOST, Broker
from pg_database import connect
from polling import wait_until

from edge.fleet.collector import Collector
from edge.fleet.config import parse_fleet_config
from edge.fleet.messages import validator

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

DEVICE = "fz"
KINDS = ("counts", "health", "status")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: 64-bit limits, float conversion and 4,300-digit texts alike
    | st.floats()  # NaN and infinities included: json.dumps writes them as NaN/Infinity
    | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _valid(kind: str, seq: int) -> Any:
    if kind == "counts":
        # In turn schema 2, 3 with attention and 4 with attention and people (their keys fuzzed like
        # the others).
        stream = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
        return window_payload(DEVICE, stream, seq, attention=seq % 3 > 0, people=seq % 3 == 2)
    if kind == "health":
        return health_payload(DEVICE)
    return "online"


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    """(topic kind, payload): bytes, any JSON, or a valid message with one key dropped or replaced."""
    kind = draw(st.sampled_from(KINDS))
    how = draw(st.sampled_from(("bytes", "json", "changed", "dropped")))
    if how == "bytes":
        return kind, draw(st.binary(max_size=300))
    if how == "json":
        return kind, json.dumps(draw(json_values)).encode()
    doc = _valid(kind, draw(st.integers(min_value=1, max_value=10**6)))
    if not isinstance(doc, dict):
        return kind, draw(st.sampled_from(("online", "offline", "Online", "", "online\x00", "ofline"))).encode()
    key = draw(st.sampled_from(sorted(doc)))
    if how == "dropped":
        doc.pop(key)
    else:
        doc[key] = draw(json_values)
    return kind, json.dumps(doc).encode()


@pytest.fixture()
def running_collector(mqtt_broker: Broker, pg_database: str) -> Any:
    stop = threading.Event()
    collector = Collector(parse_fleet_config(fleet_config(mqtt_broker.port, pg_database, client_id="c-fuzz")), stop)
    thread = threading.Thread(target=collector.run, name="collector-fuzz")
    thread.start()
    assert collector.wait_subscribed(30)
    yield collector, thread
    stop.set()
    thread.join(30)


_good_seq = itertools.count(1)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(messages(), min_size=20, max_size=40))
def test_generated_messages_never_stall_the_collector_and_valid_windows_are_stored_once(
    batch: list[tuple[str, bytes]],
    running_collector: tuple[Collector, threading.Thread],
    mqtt_broker: Broker,
    pg_database: str,
) -> None:
    collector, thread = running_collector
    c = collector.counters

    def handled() -> int:  # every message ends as exactly one of these
        return c.stored + c.duplicates + c.rejected + c.statuses

    before = handled()
    stream = str(uuid.uuid4())
    good = []
    outgoing: list[dict[str, Any]] = []
    for kind, payload in batch:
        outgoing.append({"topic": f"edge/{DEVICE}/{kind}", "payload": payload, "qos": 1})
        seq = next(_good_seq)
        good.append(seq)
        doc = window_payload("ok", stream, seq, attention=seq % 3 > 0, people=seq % 3 == 2)
        outgoing.append({"topic": "edge/ok/counts", "payload": json.dumps(doc), "qos": 1})
    mqtt_publish.multiple(outgoing, hostname=HOST, port=mqtt_broker.port, protocol=5)
    wait_until(lambda: handled() >= before + len(outgoing), "every message handled")
    assert thread.is_alive()
    assert handled() == c.received
    with connect(pg_database) as conn:
        stored = [s for (s,) in conn.execute("SELECT seq FROM windows WHERE device = 'ok' AND stream = %s", (stream,))]
        rejected = conn.execute("SELECT count(*), count(*) FILTER (WHERE reason = '') FROM rejected").fetchone()
    assert sorted(stored) == good
    assert rejected == (c.rejected, 0)


@settings(max_examples=400, deadline=None)
@given(message=messages())
def test_the_door_and_the_reference_validator_agree_on_every_generated_message(message: tuple[str, bytes]) -> None:
    """The collector checks the shipped schemas with fastjsonschema (fast); jsonschema is the
    reference implementation. Every document the generator makes gets the same verdict from both."""
    kind, payload = message
    if kind == "status":
        return
    try:
        doc = json.loads(payload)
    except ValueError:
        return
    name = "window.schema.json" if kind == "counts" else "health.schema.json"
    try:
        validator(name)(doc)
        fast = True
    except JsonSchemaException:
        fast = False
    assert fast == _reference(name).is_valid(doc), doc


def _reference(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((REPO / "edge" / "schemas" / name).read_text()))


def test_the_fuzz_strategy_makes_every_kind_of_message(broker_factory: Callable[..., Broker]) -> None:
    """The generator reaches each kind and each way of breaking one (a fuzz test that cannot
    produce a case proves nothing about it)."""
    seen: set[tuple[str, str]] = set()

    @settings(max_examples=300, deadline=None)
    @given(messages())
    def collect(message: tuple[str, bytes]) -> None:
        kind, payload = message
        try:
            doc = json.loads(payload)
            shape = "object" if isinstance(doc, dict) else "json"
        except ValueError:
            shape = "not json"
        seen.add((kind, shape))

    collect()
    assert {("counts", "object"), ("health", "object"), ("counts", "not json"), ("status", "not json")} <= seen
