"""Functions shared by the MQTT tests: payloads, sink configs and sinks with fast timings, a
recording subscriber, a log waiter, a sink in a child process (for SIGKILL) and a TCP relay whose
link can die.

Waits are Conditions/Events with bounded timeouts, never sleeps."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import select
import socket
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import HOST
from paho.mqtt.enums import CallbackAPIVersion

from edge.sinks.base import SinkContext
from edge.sinks.mqtt import DeliveryTiming, MqttSink, MqttSinkConfig
from edge.state_store import StateStore
from edge.window import DayTotal, Dwell, Faces, Span, Window

REPO = Path(__file__).resolve().parents[1]
DEVICE = "cam1"
COUNTS = f"edge/{DEVICE}/counts"
STATUS = f"edge/{DEVICE}/status"
WAIT = 30.0  # upper bound for any single wait on a loaded 2-core CI machine; normally far sooner


STREAM = "6f1c2b4e-8a1d-4f7e-9a53-0d6f4c1e2b3a"


def window(seq: int) -> Window:
    """A numbered window as the state store hands it to a sink."""
    return Window(
        device=DEVICE,
        site="shop",
        stream=STREAM,
        seq=seq,
        span=Span("2026-11-23T12:00:00Z", "2026-11-23T12:01:00Z", False),
        observed_s=60.0,
        visitors=7,
        today=DayTotal("2026-11-23", 7 * seq),
        faces=Faces(5, 1.2),
        dwell=Dwell(6, 12.5, 10.0, 30.0),
        breakdowns={
            "gender": {"female": 5, "male": None},
            "age": {"0-17": 0, "18-24": None, "65+": 3},
            "expression": {"happy": 5, "neutral": None},
        },
        suppressed=("gender.male",),
    )


# Reconnects and close in tenths of seconds, not the device's seconds.
FAST = DeliveryTiming(reconnect_min_s=0.1, reconnect_max_s=0.5, close_timeout_s=3.0)
_TIMINGS = {f.name for f in fields(DeliveryTiming)}


def settings(port: int, device: str = DEVICE, **kw: Any) -> MqttSinkConfig:
    """The sink section for a broker on ``port`` (``kw``: its keys, e.g. ``protocol="3.1.1"``)."""
    base: dict[str, Any] = {"host": HOST, "port": port, "keepalive": 5, "topic_prefix": f"edge/{device}/"}
    return MqttSinkConfig(**{**base, **kw})


def mqtt_sink(
    port: int,
    spool: StateStore,
    device: str = DEVICE,
    *,
    version: str = "t",
    cells: tuple[tuple[str, str], ...] = (),
    window_s: int | None = None,
    attention: bool = False,
    people: bool = False,
    line: bool = False,
    zones: tuple[str, ...] = (),
    **kw: Any,
) -> MqttSink:
    """A sink with ``FAST`` timings; ``kw`` are config keys (``settings``) or ``DeliveryTiming`` fields
    (``refused_retry_s=0.5``); ``cells`` are the breakdown cells the config produces, ``attention``
    whether its windows carry viewers, ``people`` people counts (crossings with ``line``, occupancy
    of ``zones``)."""
    timing = replace(FAST, **{k: v for k, v in kw.items() if k in _TIMINGS})
    config = settings(port, device, **{k: v for k, v in kw.items() if k not in _TIMINGS})
    groups: dict[str, tuple[str, ...]] = {}
    for group, label in cells:
        groups[group] = (*groups.get(group, ()), label)
    context = SinkContext(device, version, window_s, groups, attention, people=people, line=line, zones=zones)
    return MqttSink(config, spool, context, timing=timing)


@dataclass
class Msg:
    topic: str
    payload: str
    retain: bool


class Subscriber:
    """A plain paho client recording what arrives; ``wait_for`` blocks on a Condition, not a sleep."""

    def __init__(
        self,
        port: int,
        topics: list[str],
        *,
        client_id: str = "",
        persistent: bool = False,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.messages: list[Msg] = []
        self._cv = threading.Condition()
        self.subscribed = threading.Event()
        self._topics = topics
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=not persistent
        )
        if auth is not None:
            self.client.username_pw_set(*auth)
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
    from edge.sinks.base import SinkContext
    from edge.sinks.mqtt import DeliveryTiming, MqttSink, MqttSinkConfig
    from edge.state_store import StateStore
    from edge.window import Dwell, Faces, Span, Window
    mode, spool_path, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    config = MqttSinkConfig(host="127.0.0.1", port=port, keepalive=2, topic_prefix="edge/cam1/")
    timing = DeliveryTiming(reconnect_min_s=0.1, reconnect_max_s=0.5)
    sink = MqttSink(config, StateStore(spool_path, max(100, n)), SinkContext("cam1", "test"), timing=timing)
    if mode == "spool":
        for seq in range(1, n + 1):
            span = Span("2026-11-23T12:00:00Z", "2026-11-23T12:01:00Z", False)
            dwell = Dwell(0, None, None, None)
            window = Window("cam1", "shop", span, 60.0, seq, Faces(0, 0.0), dwell, {}, (), stream="s", seq=seq)
            sink.publish_window(window)
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


class LinkProxy:
    """A TCP relay between the sink and the broker whose link the test can make dead.

    ``blackhole()`` silently drops all bytes (a Wi-Fi drop: no FIN, no RST), so
    messages in flight are lost and only keepalive can notice; ``restore()``
    closes the dead connections and relays new ones again; ``reset()`` aborts every
    connection with a TCP RST (a router reboot, a NAT table flush). The broker stays up.
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
                if cmd in ("restore", "stop", "reset"):
                    for s in list(self._peers):
                        if s not in self._peers:
                            continue  # closed with its peer
                        if cmd == "reset":  # linger 0: close() sends RST instead of FIN
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
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

    def reset(self) -> None:
        self._do("reset")

    def stop(self) -> None:
        self._do("stop")
