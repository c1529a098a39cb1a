"""MqttSink against a real mosquitto per test: order, store-and-forward across broker outages and
SIGKILL, Last Will, discovery, TLS and refused credentials. Waits are Events with bounded timeouts."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import HOST, Broker, TlsFiles
from paho.mqtt.enums import CallbackAPIVersion

from edge.sinks import (
    SINKS,
    JsonlSettings,
    JsonlSink,
    MqttSettings,
    MqttSink,
    SinkError,
    TlsSettings,
    build_health,
    pi_health,
    read_password,
)
from edge.sinks.forget import forget_device
from edge.spool import Spool

REPO = Path(__file__).resolve().parents[1]
DEVICE = "cam1"
COUNTS = f"edge/{DEVICE}/counts"
STATUS = f"edge/{DEVICE}/status"
WAIT = 10.0  # upper bound for any single wait; tests normally finish far sooner


def window(seq: int) -> dict[str, Any]:
    return {
        "schema": 1,
        "device": DEVICE,
        "site": "shop",
        "seq": seq,
        "window": {"start": "2026-11-23T12:00:00Z", "end": "2026-11-23T12:01:00Z", "partial": False},
        "visitors": 7,
        "faces": {"peak": 5, "mean": 1.2},
        "dwell_s": {"n": 6, "mean": 12.5, "p50": 10.0, "p90": 30.0},
        "gender": {"female": 5, "male": None},
        "age": {"0-17": 0, "18-24": None, "65+": 3},
        "expression": {"happy": 5, "neutral": None},
        "suppressed": ["gender.male"],
    }


def settings(port: int, **kw: Any) -> MqttSettings:
    base: dict[str, Any] = {
        "host": HOST,
        "port": port,
        "keepalive": 5,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "close_timeout_s": 3.0,
    }
    return MqttSettings(**{**base, **kw})


@dataclass
class Msg:
    topic: str
    payload: str
    retain: bool


class Subscriber:
    """A plain paho client recording what arrives; ``wait_for`` blocks on a Condition, not a sleep."""

    def __init__(self, port: int, topics: list[str], *, client_id: str = "", persistent: bool = False) -> None:
        self.messages: list[Msg] = []
        self._cv = threading.Condition()
        self.subscribed = threading.Event()
        self._topics = topics
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=not persistent
        )
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(HOST, port, keepalive=5)
        self.client.loop_start()
        assert self.subscribed.wait(WAIT), "subscriber did not get SUBACK"

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, m: mqtt.MQTTMessage) -> None:
        with self._cv:
            self.messages.append(Msg(m.topic, m.payload.decode(), bool(m.retain)))
            self._cv.notify_all()

    def wait_for(self, predicate: Callable[[list[Msg]], bool], timeout: float = WAIT) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: predicate(self.messages), timeout)

    def seqs(self) -> list[int]:
        """Window seqs in first-arrival order (consumers de-duplicate on (device, seq))."""
        with self._cv:
            seen = [json.loads(m.payload)["seq"] for m in self.messages if m.topic == COUNTS]
        return list(dict.fromkeys(seen))

    def wait_seqs(self, expected: list[int], timeout: float = WAIT) -> list[int]:
        self.wait_for(lambda _: len(self.seqs()) >= len(expected), timeout)
        return self.seqs()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class LogWaiter(logging.Handler):
    """Collects edge.sinks log lines and lets a test wait (bounded) for N matching ones."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._cv = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cv:
            self.lines.append(record.getMessage())
            self._cv.notify_all()

    def wait_for(self, pattern: str, count: int = 1, since: int = 0, timeout: float = WAIT) -> list[str]:
        """Lines (from index ``since``) matching ``pattern``, once ``count`` exist or ``timeout`` passes."""
        rx = re.compile(pattern)
        with self._cv:
            self._cv.wait_for(lambda: sum(bool(rx.search(x)) for x in self.lines[since:]) >= count, timeout)
            return [x for x in self.lines[since:] if rx.search(x)]


@pytest.fixture()
def sink_log() -> Iterator[LogWaiter]:
    handler = LogWaiter()
    logger = logging.getLogger("edge.sinks")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.fixture()
def subscribers() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(*args: Any, **kwargs: Any) -> Subscriber:
        made.append(Subscriber(*args, **kwargs))
        return made[-1]

    yield make
    for sub in made:
        sub.close()


# A sink in its own process, so the test can SIGKILL it.
HELPER = textwrap.dedent("""
    import sys
    from edge.sinks import MqttSettings, MqttSink
    from edge.spool import Spool
    mode, spool_path, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    settings = MqttSettings(host="127.0.0.1", port=port, keepalive=2, reconnect_min_s=0.1, reconnect_max_s=0.5)
    sink = MqttSink(settings, Spool(spool_path, 100), "cam1", "test")
    if mode == "spool":
        for seq in range(1, n + 1):
            sink.publish_window({"schema": 1, "device": "cam1", "seq": seq, "visitors": seq})
        print("spooled", flush=True)
    else:
        assert sink.wait_connected(10)
        print("connected", flush=True)
    sys.stdin.read()  # until killed
""")


def run_helper(tmp_path: Path, *args: Any) -> subprocess.Popen[str]:
    script = tmp_path / "sink_helper.py"
    script.write_text(HELPER)
    return subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def read_line(proc: subprocess.Popen[str], timeout: float = WAIT) -> str:
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout).strip()
    except queue.Empty:
        return ""


def sigkill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=WAIT)


# --------------------------------------------------------------------------- tests


def test_windows_in_order_status_and_discovery(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    sub = subscribers(mqtt_broker.port, [f"edge/{DEVICE}/#"])
    spool = Spool(tmp_path / "spool.db", 100)
    sink = MqttSink(settings(mqtt_broker.port), spool, DEVICE, "1.2.3")
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
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)

    sink.close()
    assert sub.wait_for(lambda ms: ms[-1].topic == STATUS and ms[-1].payload == "offline")
    spool.close()


def test_broker_outage_spools_then_delivers_everything_in_order(
    broker_factory: Callable[..., Broker], tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    broker = broker_factory(persistence=True)  # keeps the subscriber's session across the restart
    sub = subscribers(broker.port, [COUNTS], client_id="outage-sub", persistent=True)
    spool = Spool(tmp_path / "spool.db", 100)
    with MqttSink(settings(broker.port), spool, DEVICE, "t") as sink:
        assert sink.wait_connected(WAIT)
        for seq in range(1, 4):
            sink.publish_window(window(seq))
        assert sub.wait_seqs([1, 2, 3]) == [1, 2, 3]
        assert sink.wait_idle(WAIT)

        broker.stop()
        for seq in range(4, 10):
            sink.publish_window(window(seq))
        assert spool.depth() == 6  # durable, unacknowledged
        broker.start()

        assert sub.wait_seqs(list(range(1, 10))) == list(range(1, 10))
        assert sink.wait_idle(WAIT)
        assert spool.depth() == 0
    spool.close()


class LinkProxy:
    """A TCP relay between the sink and the broker whose link the test can make dead.

    ``blackhole()`` silently drops all bytes (a Wi-Fi drop: no FIN, no RST), so
    messages in flight are lost and only keepalive can notice; ``restore()``
    closes the dead connections and relays new ones again. The broker stays up.
    """

    def __init__(self, target_port: int) -> None:
        self._srv = socket.create_server((HOST, 0))
        self.port = int(self._srv.getsockname()[1])
        self._target = target_port
        self._peers: dict[socket.socket, socket.socket] = {}
        self._dead = False
        self._cmds: queue.SimpleQueue[tuple[str, threading.Event]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _close(self, s: socket.socket) -> None:
        peer = self._peers.pop(s, None)
        s.close()
        if peer is not None:
            self._peers.pop(peer, None)
            peer.close()

    def _run(self) -> None:
        while True:
            while not self._cmds.empty():
                cmd, done = self._cmds.get()
                if cmd in ("restore", "stop"):
                    for s in list(self._peers):
                        self._close(s)
                    self._dead = False
                else:
                    self._dead = True
                done.set()
                if cmd == "stop":
                    self._srv.close()
                    return
            readable, _, _ = select.select([self._srv, *self._peers], [], [], 0.05)
            for s in readable:
                if s is self._srv:
                    client, _ = self._srv.accept()
                    upstream = socket.create_connection((HOST, self._target))
                    self._peers[client], self._peers[upstream] = upstream, client
                elif s in self._peers:
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self._close(s)
                    elif not self._dead:
                        self._peers[s].sendall(data)

    def _do(self, cmd: str) -> None:
        done = threading.Event()
        self._cmds.put((cmd, done))
        assert done.wait(WAIT)

    def blackhole(self) -> None:
        self._do("blackhole")

    def restore(self) -> None:
        self._do("restore")

    def stop(self) -> None:
        self._do("stop")


def test_dead_link_loses_in_flight_windows_which_are_resent_in_order(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber], sink_log: LogWaiter
) -> None:
    """Windows sent into a dead link are never acknowledged: after keepalive notices, they and the
    windows spooled meanwhile all arrive, in order. The broker never restarts."""
    sub = subscribers(mqtt_broker.port, [COUNTS])
    proxy = LinkProxy(mqtt_broker.port)
    try:
        with (
            Spool(tmp_path / "spool.db", 100) as spool,
            MqttSink(settings(proxy.port, keepalive=1, max_inflight=4), spool, DEVICE, "t") as sink,
        ):
            assert sink.wait_connected(WAIT)
            for seq in range(1, 4):
                sink.publish_window(window(seq))
            assert sub.wait_seqs([1, 2, 3]) == [1, 2, 3]
            assert sink.wait_idle(WAIT)

            proxy.blackhole()
            for seq in range(4, 7):  # sent into the void: in flight, never acknowledged
                sink.publish_window(window(seq))
            assert sink_log.wait_for("lost connection"), sink_log.lines  # keepalive noticed
            for seq in range(7, 12):  # spooled while disconnected
                sink.publish_window(window(seq))
            assert spool.depth() == 8
            proxy.restore()

            assert sub.wait_seqs(list(range(1, 12))) == list(range(1, 12))
            assert sink.wait_idle(WAIT)
            assert spool.depth() == 0
    finally:
        proxy.stop()


def test_sigkilled_sink_leaves_spool_that_a_new_sink_drains(
    broker_factory: Callable[..., Broker], tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    broker = broker_factory(start=False)
    spool_path = tmp_path / "spool.db"
    proc = run_helper(tmp_path, "spool", spool_path, broker.port, 5)
    try:
        assert read_line(proc) == "spooled"
    finally:
        sigkill(proc)
    with Spool(spool_path, 100) as spool:
        assert [s for s, _ in spool.pending(10)] == [1, 2, 3, 4, 5]

        broker.start()
        sub = subscribers(broker.port, [COUNTS])
        with MqttSink(settings(broker.port), spool, DEVICE, "t") as sink:
            assert sub.wait_seqs([1, 2, 3, 4, 5]) == [1, 2, 3, 4, 5]
            assert sink.wait_idle(WAIT)
        assert spool.depth() == 0


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


def test_tls_with_right_and_wrong_ca(
    broker_factory: Callable[..., Broker],
    tls_files: TlsFiles,
    tmp_path: Path,
    subscribers: Callable[..., Subscriber],
    sink_log: LogWaiter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = broker_factory(tls=tls_files)
    assert broker.tls_port is not None
    sub = subscribers(broker.port, [COUNTS])  # plain listener on the same broker

    with (
        Spool(tmp_path / "ok.db", 10) as spool,
        MqttSink(settings(broker.tls_port, tls=TlsSettings(ca_file=tls_files.ca)), spool, DEVICE, "t") as sink,
    ):
        assert sink.wait_connected(WAIT)
        sink.publish_window(window(1))
        assert sub.wait_seqs([1]) == [1]

    caplog.set_level(logging.INFO, logger="edge.sinks")
    with (
        Spool(tmp_path / "bad.db", 10) as spool,
        MqttSink(settings(broker.tls_port, tls=TlsSettings(ca_file=tls_files.wrong_ca)), spool, "cam2", "t") as sink,
    ):
        lines = sink_log.wait_for("certificate rejected")
        assert lines, sink_log.lines
        assert not sink.connected
    assert "certificate verify failed" in lines[0] and str(tls_files.wrong_ca) in lines[0]
    assert any("certificate rejected" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_refused_password_is_logged_per_attempt_and_retried(
    broker_factory: Callable[..., Broker], tmp_path: Path, sink_log: LogWaiter, caplog: pytest.LogCaptureFixture
) -> None:
    broker = broker_factory(users={"edge": "s3cret-right"})
    wrong, right = tmp_path / "wrong", tmp_path / "right"
    wrong.write_text("s3cret-wrong\n")
    right.write_text("s3cret-right\n")
    caplog.set_level(logging.INFO, logger="edge.sinks")
    with Spool(tmp_path / "spool.db", 10) as spool:
        for protocol in ("5", "3.1.1"):
            s = settings(
                broker.port,
                username="edge",
                password_file=wrong,
                protocol=protocol,
                reconnect_min_s=0.05,
                reconnect_max_s=0.2,
            )
            before = len(sink_log.lines)
            with MqttSink(s, spool, DEVICE, "t") as sink:
                refused = sink_log.wait_for("refused the connection", count=2, since=before)
                assert len(refused) >= 2, sink_log.lines
                assert sink.connect_attempts >= 2
                assert not sink.connected
                sink.publish_window(window(1))  # still accepted (spooled) while refused
            assert re.search(r"(Not authorized|Bad user name or password) \(reason code 13[45]\)", refused[0])
            assert "check the MQTT user name ('edge') and password" in refused[0]
        with MqttSink(settings(broker.port, username="edge", password_file=right), spool, DEVICE, "t") as sink:
            assert sink.wait_connected(WAIT)
            assert sink.wait_idle(WAIT)
    assert not any("s3cret" in r.getMessage() for r in caplog.records)


def test_missing_password_or_ca_file_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope" / "mqtt-password"
    with Spool(tmp_path / "spool.db", 10) as spool:
        with pytest.raises(SinkError, match=re.escape(str(missing))):
            MqttSink(settings(1, username="u", password_file=missing), spool, DEVICE, "t")
        with pytest.raises(SinkError, match=re.escape(f"CA file {missing}")):
            MqttSink(settings(1, tls=TlsSettings(ca_file=missing)), spool, DEVICE, "t")
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "mqtt-password").write_text("pw\n")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))  # as systemd's LoadCredential= sets it
        assert read_password(settings(1, username="u", password_credential="mqtt-password")) == "pw"
        monkeypatch.setenv("MQTT_PW", "from-env")
        assert read_password(settings(1, username="u", password_env="MQTT_PW")) == "from-env"
        with pytest.raises(SinkError, match="NOPE_UNSET"):
            read_password(settings(1, username="u", password_env="NOPE_UNSET"))


def test_full_spool_evicts_oldest_while_broker_is_down(
    broker_factory: Callable[..., Broker], tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    broker = broker_factory(start=False)
    with Spool(tmp_path / "spool.db", max_windows=3) as spool:
        with MqttSink(settings(broker.port), spool, DEVICE, "t") as sink:
            for seq in range(1, 6):
                sink.publish_window(window(seq))
            assert spool.evicted == 2
            assert [s for s, _ in spool.pending(10)] == [3, 4, 5]
        broker.start()
        sub = subscribers(broker.port, [COUNTS])
        with MqttSink(settings(broker.port), spool, DEVICE, "t") as sink:
            assert sub.wait_seqs([3, 4, 5]) == [3, 4, 5]
            assert sink.wait_idle(WAIT)


def test_jsonl_sink_and_registry(tmp_path: Path) -> None:
    assert {"jsonl": JsonlSink, "mqtt": MqttSink} == SINKS
    out = tmp_path / "out" / "windows.jsonl"
    with JsonlSink(JsonlSettings(path=str(out))) as sink:
        sink.publish_window(window(1))
        assert out.read_text() == json.dumps(window(1), separators=(",", ":")) + "\n"  # flushed per line
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
    spool = Spool(tmp_path / "spool.db", 100)
    with MqttSink(settings(mqtt_broker.port, discovery_cells=before, window_s=60), spool, DEVICE, "1") as sink:
        assert sink.wait_connected(WAIT)
    configs = [t for t in retained_now(mqtt_broker.port, subscribers, ["homeassistant/#"])]
    assert f"homeassistant/sensor/{DEVICE}/gender_female/config" in configs

    # The operator switches gender off and changes the age brackets.
    after = (("age", "0-29"), ("age", "30+"), ("age", "unknown"))
    sub = subscribers(mqtt_broker.port, ["homeassistant/#"])
    with MqttSink(settings(mqtt_broker.port, discovery_cells=after, window_s=60), spool, DEVICE, "1") as sink:
        assert sink.wait_connected(WAIT)
        gone = {f"homeassistant/sensor/{DEVICE}/{o}/config" for o in ("gender_female", "gender_male", "gender_unknown")}
        gone |= {f"homeassistant/sensor/{DEVICE}/{o}/config" for o in ("age_0_17", "age_18_plus")}
        assert sub.wait_for(lambda ms: gone <= {m.topic for m in ms if m.payload == ""}), sub.messages
        assert set(sink.cleared) == gone
    left = retained_now(mqtt_broker.port, subscribers, ["homeassistant/#"])
    objects = {t.split("/")[3] for t in left}
    assert objects == {
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
    spool = Spool(tmp_path / "spool.db", 100)
    other = Spool(tmp_path / "other.db", 100)
    cells = (("gender", "female"),)
    with (
        MqttSink(settings(mqtt_broker.port, discovery_cells=cells), spool, DEVICE, "1") as sink,
        MqttSink(settings(mqtt_broker.port, discovery_cells=cells), other, "cam2", "1") as neighbour,
    ):
        assert sink.wait_connected(WAIT) and neighbour.wait_connected(WAIT)
        sink.publish_health({"fps": 1.0})
    filters = ["homeassistant/#", "edge/#"]
    before = retained_now(mqtt_broker.port, subscribers, filters)
    mine = {t for t in before if f"/{DEVICE}/" in t}
    assert f"edge/{DEVICE}/status" in mine and f"edge/{DEVICE}/health" in mine and len(mine) == 7

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
    spool = Spool(tmp_path / "spool.db", 100)
    with MqttSink(settings(mqtt_broker.port, discovery_cells=cells), spool, DEVICE, "1") as sink:
        assert sink.wait_connected(WAIT)
        sink.publish_window(window(1))  # has gender
        assert sub.wait_for(lambda ms: any(m.topic == COUNTS for m in ms))
        assert sink.wait_idle(WAIT)
    configs = {m.topic for m in sub.messages if m.topic.startswith("homeassistant/") and m.payload}
    assert configs and not {t for t in configs if "/gender_" in t}
    spool.close()
