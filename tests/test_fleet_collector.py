"""The fleet collector against the real thing: mosquitto, PostgreSQL, the device's MQTT sink and
spool, and ``edge collect`` as a process that is killed with SIGKILL."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import psycopg
import pytest
from fleet_parts import (
    Device,
    collector_process,
    fleet_config,
    health_payload,
    rollup_mismatches,
    stored_count,
    stored_keys,
    window_payload,
)
from mqtt_broker import HOST, Broker, free_port
from mqtt_clients import Subscriber
from pg_database import connect
from polling import wait_until

from edge.commands.demo import DEVICE_ID as DEMO_DEVICE
from edge.commands.demo import ensure_video
from edge.config import ConfigError
from edge.fleet.collector import Collector
from edge.fleet.config import load_fleet_config, parse_fleet_config
from edge.fleet.dashboard import summary
from edge.fleet.messages import DeviceStatus, WindowRow, parse_window
from edge.fleet.schema import migrate
from edge.fleet.store import WindowStore, connection_lost


def _online(sub: Subscriber, client_id: str, count: int) -> None:
    """Wait until the collector's retained status has said ``online`` ``count`` times in all."""
    topic = f"fleet/collectors/{client_id}/status"
    ok = sub.wait_for(lambda ms: sum(m.topic == topic and m.payload == "online" for m in ms) >= count, 60)
    assert ok, f"collector {client_id} did not come online (#{count})"


def test_exactly_once_across_kill9_twice_and_a_broker_restart(
    tmp_path: Path, broker_factory: Callable[..., Broker], pg_database: str, subscribers: Callable[..., Subscriber]
) -> None:
    broker = broker_factory(persistence=True)
    status = subscribers(broker.port, ["fleet/collectors/+/status"])
    config = fleet_config(broker.port, pg_database, client_id="c-exact")
    devices = [Device(tmp_path, f"cam{i}", broker.port) for i in range(3)]
    try:
        with collector_process(tmp_path, config) as collector:
            collector.start()  # first: the broker keeps windows for its session from now on
            _online(status, "c-exact", 1)

            for d in devices:
                d.publish(60)
            wait_until(lambda: stored_count(pg_database) >= 40, "the first windows stored")
            collector.kill()  # 1: in the middle of the stream

            for d in devices:  # published while no collector runs: queued in its session
                d.publish(60)
            collector.start()
            _online(status, "c-exact", 2)
            wait_until(lambda: stored_count(pg_database) >= 200, "queued windows arriving")
            collector.kill()  # 2: while it works through the queue

            for d in devices:
                d.publish(40)
            broker.stop()  # a broker restart (sessions and queued windows persist)
            broker.start()
            for d in devices:
                d.publish(40)
            collector.start()

            expected = sorted(k for d in devices for k in d.handed)
            wait_until(lambda: stored_count(pg_database) >= len(expected), f"{len(expected)} windows stored")
            wait_until(lambda: all(d.spool.depth() == 0 for d in devices), "every device's spool acknowledged")
            assert collector.terminate() == 0, collector.log()
        # What the devices' spools say they published (all acknowledged, none evicted) is exactly
        # what the table holds, each once.
        assert all(d.spool.evicted == 0 for d in devices)
        keys = stored_keys(pg_database)
        assert len(keys) == len(set(keys))
        assert sorted(keys) == expected, (len(keys), len(expected))
        assert rollup_mismatches(pg_database) == 0  # the hourly sums count each window once too
        log = collector.log()
        assert log.count("session resumed") >= 2, log
    finally:
        for d in devices:
            d.close()


def _run_in_thread(config: dict[str, Any]) -> tuple[Collector, threading.Event, threading.Thread]:
    stop = threading.Event()
    collector = Collector(parse_fleet_config(config), stop)
    thread = threading.Thread(target=collector.run, name=f"collector-{config['mqtt']['client_id']}")
    thread.start()
    assert collector.wait_subscribed(30), "collector did not subscribe"
    return collector, stop, thread


def test_two_collectors_share_the_stream_without_loss_or_duplicates(
    tmp_path: Path, mqtt_broker: Broker, pg_database: str
) -> None:
    running = [
        _run_in_thread(fleet_config(mqtt_broker.port, pg_database, client_id=f"c-share-{i}", share_group="fleet"))
        for i in range(2)
    ]
    devices = [Device(tmp_path, f"cam{i}", mqtt_broker.port) for i in range(4)]
    try:
        for d in devices:
            d.publish(50)
        expected = sorted(k for d in devices for k in d.handed)
        wait_until(lambda: stored_count(pg_database) >= len(expected), "all windows stored")
        wait_until(lambda: all(d.spool.depth() == 0 for d in devices), "spools drained")
    finally:
        for _, stop, thread in running:
            stop.set()
            thread.join(30)
        for d in devices:
            d.close()
    assert sorted(stored_keys(pg_database)) == expected
    with connect(pg_database) as conn:
        per_collector = dict(conn.execute("SELECT collector, count(*) FROM windows GROUP BY 1").fetchall())
    # The broker split the windows between the two members of the group.
    assert set(per_collector) == {"c-share-0", "c-share-1"}, per_collector
    assert sum(per_collector.values()) == len(expected)
    assert sum(c.counters.duplicates for c, _, _ in running) == 0
    assert rollup_mismatches(pg_database) == 0  # two writers of the same hours


def test_bad_messages_are_kept_with_a_reason_and_do_not_stall_the_stream(
    mqtt_broker: Broker, pg_database: str, subscribers: Callable[..., Subscriber]
) -> None:
    health = subscribers(mqtt_broker.port, ["fleet/collectors/c-bad/health"])
    collector, stop, thread = _run_in_thread(fleet_config(mqtt_broker.port, pg_database, client_id="c-bad"))
    good = window_payload("cam9", "6f1c2b4e-8a1d-4f7e-9a53-0d6f4c1e2b3a", 1)
    old_schema = {**good, "schema": 1}
    people = window_payload("cam9", "6f1c2b4e-8a1d-4f7e-9a53-0d6f4c1e2b3a", 2, people=True)  # schema 4
    many_zones = {f"z{i}": {"peak": 0, "mean": 0.0} for i in range(9)}
    try:
        mqtt_publish.multiple(
            [
                {"topic": "edge/cam9/counts", "payload": b"\xff not json", "qos": 1},
                {"topic": "edge/cam9/counts", "payload": json.dumps(old_schema), "qos": 1},
                {"topic": "edge/cam9/counts", "payload": json.dumps({**good, "seq": 0}), "qos": 1},
                {"topic": "edge/cam9/counts", "payload": json.dumps({**good, "seq": 2, "visitors": 3 << 30}), "qos": 1},
                {"topic": "edge/cam9/counts", "payload": json.dumps({**good, "seq": 3, "site": "a\x00b"}), "qos": 1},
                {
                    "topic": "edge/cam9/counts",
                    "payload": json.dumps({**good, "seq": 4, "observed_s": float("nan")}),
                    "qos": 1,
                },
                {"topic": "edge/cam9/health", "payload": '{"fps": NaN}', "qos": 1},
                # Schema 4 windows whose people do not add up, or come where they cannot.
                {"topic": "edge/cam9/counts", "payload": json.dumps({**people, "people_with_face": 21}), "qos": 1},
                {"topic": "edge/cam9/counts", "payload": json.dumps({**people, "stayers": 6}), "qos": 1},
                {"topic": "edge/cam9/counts", "payload": json.dumps({**people, "schema": 3}), "qos": 1},
                {"topic": "edge/cam9/counts", "payload": json.dumps({**people, "zones": many_zones}), "qos": 1},
                {"topic": "edge/cam9/counts", "payload": json.dumps(good), "qos": 1},
                {"topic": "edge/cam9/counts", "payload": json.dumps(good), "qos": 1},  # a redelivery
                {"topic": "edge/cam9/counts", "payload": json.dumps(people), "qos": 1},
                {"topic": "edge/cam9/status", "payload": "online", "qos": 1, "retain": True},
                {"topic": "edge/cam9/health", "payload": json.dumps(health_payload("cam9", depth=4)), "qos": 1},
            ],
            hostname=HOST,
            port=mqtt_broker.port,
            protocol=5,
        )
        wait_until(lambda: collector.counters.received >= 16, "sixteen messages handled")
        ok = health.wait_for(lambda ms: any(json.loads(m.payload)["received"] >= 16 for m in ms), 30)
        assert ok, "the collector's health did not report the messages"
    finally:
        stop.set()
        thread.join(30)
    with connect(pg_database) as conn:
        reasons = [r for (r,) in conn.execute("SELECT reason FROM rejected ORDER BY id")]
        windows = conn.execute(
            "SELECT device, seq, visitors, people, crossings_in FROM windows ORDER BY seq"
        ).fetchall()
        device = conn.execute("SELECT status, health->'spool'->>'depth' FROM devices WHERE device='cam9'").fetchone()
    expected = [
        "not JSON: 'utf-8' codec can't decode",
        "schema is 1",
        "seq must be bigger than or equal to 1",
        "visitors is 3221225472, expected a count from 0 to 2147483647",
        "site holds a NUL character",
        "not JSON: NaN is not a JSON number",
        "not JSON: NaN is not a JSON number",
        "people_with_face is 21, more than people (20)",
        "passers_by + stayers is 21, not people (20)",
        "people is a schema 4 key, the window says schema 3",
        "zones has 9 zones, a device has at most 8",
    ]
    assert len(reasons) == len(expected), reasons
    for text in expected:
        assert sum(r.startswith(text) for r in reasons) == expected.count(text), (text, reasons)
    assert windows == [("cam9", 1, 7, None, None), ("cam9", 2, 7, 20, 6)]  # the good ones behind the bad
    assert collector.counters.duplicates == 1
    assert rollup_mismatches(pg_database) == 0  # the duplicate added nothing to the hour
    assert device == ("online", "4")


def test_no_message_of_any_kind_stalls_the_collector_or_speaks_for_another_device(
    mqtt_broker: Broker, pg_database: str
) -> None:
    """The reproductions of the fleet-ingest issue, each between valid windows: ids and texts
    the database cannot index, 10 MB, numbers JSON cannot hold, text that is not Unicode, windows
    the shipped schema refuses, and a window published under another device's name. Every bad one
    lands in ``rejected`` with its reason; the collector keeps storing and never exits, also when
    it starts again and the broker hands it the bad retained health once more."""
    config = fleet_config(mqtt_broker.port, pg_database, client_id="c-door")
    stream = "6f1c2b4e-8a1d-4f7e-9a53-0d6f4c1e2b3a"
    cam1 = window_payload("cam1", stream, 283, visitors=5)
    good = window_payload("cam9", stream, 1)

    def without(doc: dict[str, Any], key: str) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k != key}

    bad: list[tuple[str, bytes | str, str]] = [  # topic, payload, what its reason says
        ("edge/cam9/counts", json.dumps({**good, "seq": 2, "device": "x" * 4000}), "device is a text of 4000"),
        ("edge/cam9/counts", json.dumps({**good, "seq": 3, "site": "s" * (10 << 20)}), "bytes, over the 65536"),
        ("edge/cam9/health", '{"schema": 1, "fps": 1e400}', "not JSON: 1e400 is not a finite number"),
        ("edge/cam9/health", json.dumps({**health_payload("cam9"), "version": "\ud800"}), "version is not valid"),
        (
            "edge/cam9/counts",
            json.dumps(without({**good, "seq": 4}, "today")),
            "the message must contain ['today'] properties",
        ),
        (
            "edge/cam9/counts",
            json.dumps(without({**good, "seq": 5}, "suppressed")),
            "the message must contain ['suppressed'] properties",
        ),
        (
            "edge/cam9/counts",
            json.dumps({**good, "seq": 6, "extra": 1}),
            "the message must not contain {'extra'} properties",
        ),
        ("edge/cam9/counts", json.dumps({**good, "seq": 7, "device": "bad device!/#"}), "device must match pattern"),
        (
            "edge/cam9/counts",
            json.dumps({**good, "seq": 8, "today": {**good["today"], "visitors": -7}}),
            "today.visitors must be bigger than or equal to 0",
        ),
        ("edge/intruder/counts", json.dumps({**cam1, "visitors": 999}), "device is 'cam1' but the topic is 'intr"),
        ("edge/cam9/status", "rebooting", "status is 'rebooting'"),
        ("edge/cam9/counts", json.dumps({**good, "seq": 9, "observed_s": 10**400}), "is an integer beyond 64 bits"),
    ]
    messages = []
    for i, (topic, payload, _) in enumerate(bad):
        messages.append({"topic": topic, "payload": payload, "qos": 1, "retain": topic.endswith("/health")})
        messages.append({"topic": "edge/cam9/counts", "payload": json.dumps({**good, "seq": 100 + i}), "qos": 1})
    messages.append({"topic": "edge/cam1/counts", "payload": json.dumps(cam1), "qos": 1})
    collector, stop, thread = _run_in_thread(config)
    try:
        mqtt_publish.multiple(messages, hostname=HOST, port=mqtt_broker.port, protocol=5)
        c = collector.counters
        wait_until(lambda: c.stored + c.duplicates + c.rejected + c.statuses >= len(messages), "every message handled")
        assert thread.is_alive()
        kinds = collector.health()["rejected_by_kind"]
        assert kinds == {"device": 1, "json": 2, "schema": 5, "size": 1, "status": 1, "text": 2}, kinds
    finally:
        stop.set()
        thread.join(30)
    again, stop, thread = _run_in_thread(config)  # the retained bad health comes again
    try:
        wait_until(lambda: again.counters.rejected >= 1, "the retained health rejected again")
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(30)
    with connect(pg_database) as conn:
        reasons = [r for (r,) in conn.execute("SELECT reason FROM rejected ORDER BY id")]
        stored = conn.execute("SELECT device, seq, visitors FROM windows ORDER BY device, seq").fetchall()
    assert stored == [("cam1", 283, 5)] + [("cam9", 100 + i, 7) for i in range(len(bad))]
    for _, _, reason in bad:
        assert any(reason in r for r in reasons), (reason, reasons)
    assert len(reasons) == len(bad) + 1  # and the retained health once more


def test_what_the_database_refuses_of_a_message_is_rejected_and_only_a_lost_connection_is_retried(
    pg_database: str,
) -> None:
    """Behind the door: a value the database cannot hold, whatever error class psycopg gives it
    (an index row over its size limit is an ``OperationalError``), rejects that message alone."""
    stream = "6f1c2b4e-8a1d-4f7e-9a53-0d6f4c1e2b3a"
    rows = [
        parse_window("edge/cam1/counts", json.dumps(window_payload("cam1", stream, i)).encode(), "cam1") for i in (1, 2)
    ]
    windows = [r for r in rows if isinstance(r, WindowRow)]
    # A site of 12,000 varied characters: over the size of an index row (the hourly roll-up's key).
    # The door takes texts of 256 characters at most; this one is put behind it.
    wide = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(12000))
    windows[1] = replace(windows[1], window=replace(windows[1].window, site=wide))
    health = DeviceStatus("cam1", health='{"version": "\\ud800"}', topic="edge/cam1/health", payload=b"x")
    with connect(pg_database) as conn:
        migrate(conn)
        result = WindowStore(conn, "c-db").write(windows, [], [health])
        stored = conn.execute("SELECT seq FROM windows").fetchall()
        reasons = [r for (r,) in conn.execute("SELECT reason FROM rejected ORDER BY id")]
    assert (result.stored, result.rejected) == (1, 2)
    assert stored == [(1,)]
    assert all(r.startswith("refused by the database: ") for r in reasons), reasons
    assert connection_lost(psycopg.OperationalError("connection refused"))  # no SQLSTATE: never reached it
    assert not connection_lost(psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"))
    assert not connection_lost(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))


# The broker ACL the README shows: each device's user name is its device id, and it may use only its
# own topics (and its own Home Assistant discovery configs); the collector reads every device's.
DEVICE_ACL = """\
pattern readwrite edge/%u/#
pattern readwrite homeassistant/sensor/%u/#

user collector
topic read edge/+/counts
topic read edge/+/status
topic read edge/+/health
topic readwrite fleet/collectors/#
"""


def test_the_broker_acl_binds_a_device_to_its_topics_and_the_collector_to_the_payloads_device(
    tmp_path: Path, broker_factory: Callable[..., Broker], pg_database: str
) -> None:
    """Two layers: the README's ACL keeps a device's credentials off other devices' topics; the
    collector refuses a payload that names another device on the device's own topic."""
    users = {"cam1": "pw-cam1", "intruder": "pw-intruder", "collector": "pw-collector"}
    broker = broker_factory(users=users, acl=DEVICE_ACL)
    (tmp_path / "collector.pw").write_text("pw-collector\n")
    config = fleet_config(broker.port, pg_database, client_id="c-acl", username="collector")
    config["mqtt"]["password_file"] = str(tmp_path / "collector.pw")
    stream = "6f1c2b4e-8a1d-4f7e-9a53-0d6f4c1e2b3a"
    real = window_payload("cam1", stream, 283, visitors=5)
    forged = {**real, "visitors": 999}
    collector, stop, thread = _run_in_thread(config)

    def publish(user: str, topic: str, doc: dict[str, Any]) -> None:
        auth = {"username": user, "password": users[user]}
        mqtt_publish.single(topic, json.dumps(doc), qos=1, hostname=HOST, port=broker.port, auth=auth, protocol=5)

    try:
        publish("intruder", "edge/cam1/counts", forged)  # the broker does not pass it on
        publish("intruder", "edge/intruder/counts", forged)  # passed on, refused by the collector
        publish("cam1", "edge/cam1/counts", real)
        wait_until(lambda: collector.counters.stored >= 1 and collector.counters.rejected >= 1, "stored and rejected")
    finally:
        stop.set()
        thread.join(30)
    with connect(pg_database) as conn:
        stored = conn.execute("SELECT device, seq, visitors FROM windows").fetchall()
        reasons = [r for (r,) in conn.execute("SELECT reason FROM rejected")]
    assert stored == [("cam1", 283, 5)]
    assert reasons == ["device is 'cam1' but the topic is 'intruder''s"]
    assert collector.counters.received == 2  # the forged window on cam1's topic never reached it


def test_the_collector_keeps_reporting_its_health_while_the_database_is_down(
    mqtt_broker: Broker, pg_database: str, subscribers: Callable[..., Subscriber]
) -> None:
    config = fleet_config(mqtt_broker.port, pg_database, client_id="c-dbdown")
    config["database"]["port"] = free_port()  # nothing listens there
    health = subscribers(mqtt_broker.port, ["fleet/collectors/c-dbdown/health"])
    collector, stop, thread = _run_in_thread(config)
    try:
        window = window_payload("cam4", "6f1c2b4e-8a1d-4f7e-9a53-0d6f4c1e2b3a", 1)
        mqtt_publish.single("edge/cam4/counts", json.dumps(window), qos=1, hostname=HOST, port=mqtt_broker.port)
        wait_until(lambda: collector.counters.received >= 1, "the window received")

        def waiting(ms: list[Any]) -> bool:  # the writer is in its retry loop, and the reports go on
            docs = [json.loads(m.payload) for m in ms]
            return sum(d["received"] >= 1 and not d["database_ok"] and d["stored"] == 0 for d in docs) >= 3

        assert health.wait_for(waiting, 30), "no health while the database was down"
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_a_device_is_seen_at_its_own_times_not_when_the_collector_hears_of_it(
    mqtt_broker: Broker, pg_database: str
) -> None:
    """A device that stopped 5 minutes ago left a retained "online" (it died without its Last
    Will) and a retained health message. A collector starting now hears both; the device's
    last_seen is its own last time (its health's ts, its last window's end), 5 minutes ago, so
    the dashboard shows it offline; a live status means now."""
    stopped = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    stream = "6f1c2b4e-8a1d-4f7e-9a53-0d6f4c1e2b3a"
    window = window_payload("cam3", stream, 1)
    window["window"] = {
        "start": (stopped - timedelta(minutes=2)).strftime(iso),
        "end": (stopped - timedelta(minutes=1)).strftime(iso),
        "partial": False,
    }
    mqtt_publish.multiple(
        [
            {"topic": "edge/cam3/status", "payload": "online", "qos": 1, "retain": True},
            {
                "topic": "edge/cam3/health",
                "payload": json.dumps({**health_payload("cam3"), "ts": stopped.strftime(iso)}),
                "qos": 1,
                "retain": True,
            },
        ],
        hostname=HOST,
        port=mqtt_broker.port,
        protocol=5,
    )
    collector, stop, thread = _run_in_thread(fleet_config(mqtt_broker.port, pg_database, client_id="c-seen"))
    try:
        mqtt_publish.single("edge/cam3/counts", json.dumps(window), qos=1, hostname=HOST, port=mqtt_broker.port)
        wait_until(
            lambda: collector.counters.stored >= 1 and collector.counters.statuses >= 2, "status, health, window"
        )
        with connect(pg_database) as conn:
            seen, status, status_at = conn.execute(
                "SELECT last_seen, status, status_at FROM devices WHERE device = 'cam3'"
            ).fetchone()
            body = summary(conn, 1, offline_after_s=180)
        assert seen == stopped, (seen, stopped)  # its health's own time, later than its window's end
        assert status == "online" and status_at is None  # replayed: said at a time nobody knows
        (row,) = [d for d in body["devices"] if d["device"] == "cam3"]
        assert row["online"] is False
        mqtt_publish.single("edge/cam3/status", "online", qos=1, retain=True, hostname=HOST, port=mqtt_broker.port)
        wait_until(lambda: collector.counters.statuses >= 3, "the live status")
        with connect(pg_database) as conn:
            seen, status_at = conn.execute("SELECT last_seen, status_at FROM devices WHERE device = 'cam3'").fetchone()
            body = summary(conn, 1, offline_after_s=180)
        assert datetime.now(timezone.utc) - seen < timedelta(seconds=60) and status_at is not None
        assert [d["online"] for d in body["devices"] if d["device"] == "cam3"] == [True]
    finally:
        stop.set()
        thread.join(30)


def test_the_demo_feeds_a_fleet_collector(tmp_path: Path, mqtt_broker: Broker, pg_database: str) -> None:
    """``edge demo --broker HOST:PORT`` publishes to the fleet's broker, and the collector stores it."""
    ensure_video(tmp_path, io.StringIO())  # the demo's own sample video, made once here
    collector, stop, thread = _run_in_thread(fleet_config(mqtt_broker.port, pg_database, client_id="c-demo"))
    try:
        demo = subprocess.run(
            [
                sys.executable,
                "-m",
                "edge.cli",
                "demo",
                "--window",
                "2",
                "--duration",
                "10",
                "--workdir",
                str(tmp_path),
                "--broker",
                f"{HOST}:{mqtt_broker.port}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert demo.returncode == 0, demo.stderr[-3000:]
        assert f"publishing to the broker at {HOST}:{mqtt_broker.port}" in demo.stdout
        wait_until(lambda: stored_count(pg_database) >= 2, "the demo's windows stored")

        def said_goodbye() -> bool:
            with connect(pg_database) as conn:
                row = conn.execute("SELECT status FROM devices WHERE device = %s", (DEMO_DEVICE,)).fetchone()
            return row == ("offline",)

        wait_until(said_goodbye, "the demo's offline status stored")
    finally:
        stop.set()
        thread.join(30)
    with connect(pg_database) as conn:
        devices = {d for (d,) in conn.execute("SELECT DISTINCT device FROM windows")}
        status = conn.execute("SELECT status FROM devices WHERE device = %s", (DEMO_DEVICE,)).fetchone()
        # The daemon's own windows: schema 4 with attention and people (on by default), every one stored.
        kinds = conn.execute(
            "SELECT DISTINCT (payload ->> 'schema')::int, attention, people_counted FROM windows"
        ).fetchall()
        rejected = conn.execute("SELECT count(*) FROM rejected").fetchone()
    assert devices == {DEMO_DEVICE} and status == ("offline",)  # its goodbye stored too
    assert kinds == [(4, True, True)] and rejected == (0,)
    assert rollup_mismatches(pg_database) == 0


def test_config_errors_name_the_key_the_value_and_what_was_expected(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(
        "mqtt:\n  host: mqtt://broker:1883\n  client_id: 'two words'\n  password: secret\n"
        "database:\n  dbnmae: x\nmin_cell: 0\n"
    )
    with pytest.raises(ConfigError) as err:
        load_fleet_config(path)
    text = str(err.value)
    assert "mqtt.host: expected only the broker host, not a URL" in text
    assert "mqtt.client_id: expected 1 to 64 letters" in text
    assert "mqtt.password: expected no clear-text password" in text and "secret" not in text
    assert "database.dbnmae" in text and "did you mean 'dbname'" in text
    assert "min_cell: expected a minimum cell size >= 1, got 0" in text
    assert f"{path}" in text and "line 2" in text


def test_the_database_password_comes_from_a_file_and_a_missing_file_is_named(tmp_path: Path) -> None:
    secret = tmp_path / "db.pass"
    secret.write_text("s3cret\n")
    config = parse_fleet_config({"database": {"username": "edge", "password_file": str(secret)}})
    assert config.database.conninfo()["password"] == "s3cret"
    secret.unlink()
    with pytest.raises(ConfigError, match=r"database.password_file: expected a readable file"):
        config.database.conninfo()
    with pytest.raises(ConfigError, match=r"database.username: expected a user name when password_env is set"):
        parse_fleet_config({"database": {"password_env": "PGPASS"}})


def test_the_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "edge" / "fleet" / "collector.example.yaml"
    config = load_fleet_config(example)
    assert config.mqtt.client_id == "edge-collector" and config.min_cell == 5


def test_the_collector_talks_tls_to_the_broker_and_refuses_an_untrusted_one(
    broker_factory: Callable[..., Broker], tls_files: Any, pg_database: str
) -> None:
    broker = broker_factory(tls=tls_files)
    good = window_payload("cam7", "0b9c6a52-3f1e-4d8a-8e55-2f7d9b1c4a60", 1)
    trusted = fleet_config(broker.tls_port, pg_database, client_id="c-tls", tls={"ca_file": str(tls_files.ca)})
    collector, stop, thread = _run_in_thread(trusted)
    try:
        mqtt_publish.single("edge/cam7/counts", json.dumps(good), qos=1, hostname=HOST, port=broker.port, protocol=5)
        wait_until(lambda: stored_count(pg_database) == 1, "the window stored over TLS")
    finally:
        stop.set()
        thread.join(30)
    # A broker whose certificate no configured CA signed: no connection, so nothing is acknowledged.
    untrusted = fleet_config(broker.tls_port, pg_database, client_id="c-tls2", tls={"ca_file": str(tls_files.wrong_ca)})
    stop2 = threading.Event()
    other = Collector(parse_fleet_config(untrusted), stop2)
    thread2 = threading.Thread(target=other.run)
    thread2.start()
    try:
        assert not other.wait_subscribed(3), "connected to a broker it should not trust"
    finally:
        stop2.set()
        thread2.join(30)
    assert not other.counters.connected
