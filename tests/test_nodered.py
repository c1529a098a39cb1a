"""Node-RED takes every window exactly once across its own restart (edge/integrations/nodered).

Real collaborators only: the pinned Node-RED 4.1.15 from ``edge/integrations/nodered/node_modules``
runs the shipped ``edge-windows.flow.json`` headless with the shipped ``settings.js``; a mosquitto
with persistence (tests/mqtt_broker.py) is stopped and started under it; a fake device publishes
windows built by the daemon's own Aggregator at QoS 1 (paho-mqtt) and waits for each PUBACK.

Waits poll Node-RED's output files (accepted windows in $EDGE_OUT, drop records in $EDGE_DROPPED)
with timeouts (tests/polling.py). The end of the run after the restart is proven by a marker, not
by waiting for silence: the broker delivers one topic in order, the function node and each file
node keep that order, so once the last window published (and its repeat) is in both files,
everything published before it on that topic has been handled.

The flow passes a window on as the device sent it: visitors and dwell as much as viewers and
attention time (schema 3 with attention on), their nulls where suppressed, and windows without
them (attention off, or schema 2 from an older device); a test checks that with such windows.
The same for the people keys (schema 4 with people counting on): people, people with a face,
passers-by and stayers, crossings of a counting line and zone occupancy where those are
configured, null where suppressed (never 0), and absent with people counting off or from a
schema 3 device.

Needs ``node`` and ``npm ci --prefix edge/integrations/nodered``; skips with that command otherwise.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import HOST, Broker
from paho.mqtt.enums import CallbackAPIVersion
from polling import poll

from edge.aggregator import AggregationConfig, Aggregator
from edge.attention import AttentionConfig
from edge.attributes import AttributesConfig
from edge.people import PeopleUpdate, PersonEnded
from edge.people_config import LineConfig, PeopleConfig
from edge.state_store import StateStore
from edge.tracker import TrackerUpdate, VisitorEnded, VisitorStarted
from edge.window import SCHEMA

REPO = Path(__file__).resolve().parent.parent
NODERED_DIR = REPO / "edge" / "integrations" / "nodered"
FLOW_FILE = NODERED_DIR / "edge-windows.flow.json"
SETTINGS = NODERED_DIR / "settings.js"
RED_JS = NODERED_DIR / "node_modules" / "node-red" / "red.js"
NODE = shutil.which("node")
INSTALL = "npm ci --prefix edge/integrations/nodered"
WAIT = 60.0  # upper bound for any single wait on a loaded 2-core CI machine; a run normally takes seconds
PROBE_S = 0.25  # how long one readiness probe may take before the next is published

NODE_MISSING = "" if NODE else f"node not found: install Node.js >= 18 and npm, then run {INSTALL}"
NODERED_MISSING = NODE_MISSING or ("" if RED_JS.exists() else f"Node-RED not installed: run {INSTALL}")
needs_node = pytest.mark.skipif(bool(NODE_MISSING), reason=NODE_MISSING)
needs_nodered = pytest.mark.skipif(bool(NODERED_MISSING), reason=NODERED_MISSING)

DEVICE = "cam-nodered"
PROBE_DEVICE = "probe"
N = 20  # windows per phase

Key = tuple[str, str, int]  # (device, stream, seq)


Tracks = tuple[VisitorEnded, ...]
Persons = tuple[PeopleUpdate, ...]


class Stream:
    """One (device, stream) of windows from the daemon's Aggregator; ``payload(seq)`` is the same bytes each time.

    ``ended``: the visitors whose track ends in each window, the first ones first (none after them);
    ``persons``: the people tracker's updates in each window (ended persons, zone counts), counted
    where ``people`` is on (None: the Aggregator's default, no people keys);
    ``schema``: the schema number an older device would publish them with."""

    def __init__(
        self,
        device: str,
        attention: AttentionConfig | None = None,
        ended: Sequence[Tracks] = (),
        schema: int | None = None,
        people: PeopleConfig | None = None,
        persons: Sequence[Persons] = (),
    ) -> None:
        self.device = device
        self._store = StateStore(Path(":memory:"), 100_000, memory=True)  # numbers them, as on a device
        self.id = self._store.stream
        self._agg = Aggregator(
            AggregationConfig(window_s=60),
            AttributesConfig(),
            attention or AttentionConfig(),
            device,
            "nodered-test",
            people=people,
        )
        self._agg.tick(0.0)  # opens window 0; each later minute closes one window with the next seq
        self._ended = list(ended)
        self._persons = list(persons)
        self._schema = schema
        self._payloads: dict[int, bytes] = {}

    def payload(self, seq: int) -> bytes:
        while seq not in self._payloads:
            i = len(self._payloads)
            visitors = self._ended[i] if i < len(self._ended) else ()
            persons = self._persons[i] if i < len(self._persons) else ()
            updates: Sequence[PeopleUpdate | None] = persons or ((None,) if visitors else ())
            for j, person_update in enumerate(updates):
                ended = visitors if j == 0 else ()  # the visitors with the first of the window's updates
                update = TrackerUpdate(new_visitors=(VisitorStarted(None),) * len(ended), ended=ended, frame=False)
                self._agg.observe(update, 60.0 * i + 30.0 + j, people=person_update)
            for w in self._agg.tick(60.0 * (i + 1)):
                numbered = self._store.finish(w if self._schema is None else replace(w, schema=self._schema))
                assert numbered.seq is not None
                self._payloads[numbered.seq] = json.dumps(numbered.to_payload()).encode()
        return self._payloads[seq]

    def key(self, seq: int) -> Key:
        return (self.device, self.id, seq)


class Device:
    """A fake edge device: QoS 1 publishes, each one waited for until the broker's PUBACK."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-device-{uuid.uuid4().hex[:8]}")
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.sent: Counter[Key] = Counter()
        self.client.connect(HOST, port, keepalive=30)
        self.client.loop_start()
        assert poll(self.client.is_connected, WAIT), "fake device did not connect"

    def publish(self, stream: Stream, seqs: Iterable[int]) -> None:
        for seq in seqs:
            assert poll(self.client.is_connected, WAIT), "fake device did not reconnect"
            info = self.client.publish(f"edge/{stream.device}/counts", stream.payload(seq), qos=1)
            info.wait_for_publish(WAIT)
            assert info.is_published(), f"no PUBACK for {stream.key(seq)}"
            self.sent[stream.key(seq)] += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class JsonLines:
    """Incremental reader of a JSON-lines file another process appends to (a torn last line waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self._offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.records
        end = data.rfind(b"\n") + 1
        self.records += [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        self._offset += end
        return self.records


class NodeRed:
    """Node-RED headless from the repo's node_modules, the given flow copied into a private userDir."""

    def __init__(self, workdir: Path, port: int, flow: list[dict[str, Any]]) -> None:
        self.user_dir = workdir / "nodered"
        self.user_dir.mkdir(parents=True)
        self.flow_path = self.user_dir / FLOW_FILE.name
        self.flow_path.write_text(json.dumps(flow, indent=4))
        self.log_path = workdir / "nodered.log"
        self.accepted = JsonLines(workdir / "accepted.jsonl")
        self.dropped = JsonLines(workdir / "dropped.jsonl")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "NODE_RED_"))}
        self.env.update(
            EDGE_MQTT_HOST=HOST,
            EDGE_MQTT_PORT=str(port),
            EDGE_OUT=str(self.accepted.path),
            EDGE_DROPPED=str(self.dropped.path),
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert NODE is not None
        cmd = [NODE, str(RED_JS), "--settings", str(SETTINGS), "--userDir", str(self.user_dir), str(self.flow_path)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.user_dir)

    def stop(self) -> int:
        """SIGTERM (Node-RED disconnects and flushes the file context store); the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"Node-RED did not stop within {WAIT} s of SIGTERM\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def counts(self) -> tuple[Counter[Key], Counter[Key]]:
        """How often each (device, stream, seq) was accepted, and dropped as a duplicate, so far."""
        accepted = Counter((r["device"], r["stream"], r["seq"]) for r in self.accepted.read())
        dups = (r for r in self.dropped.read() if r["reason"] == "duplicate")
        dropped = Counter((r["device"], r["stream"], r["seq"]) for r in dups)
        return accepted, dropped

    def wait_for(self, what: str, predicate: Callable[[Counter[Key], Counter[Key]], bool]) -> None:
        def done() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"Node-RED exited\n{self.log()}"
            return predicate(*self.counts())

        assert poll(done, WAIT), f"timed out after {WAIT} s waiting for {what}\n{self.log()}"

    def wait_answered(self, dev: Device, keys: list[Key], what: str) -> None:
        """Every publish of ``keys`` came out of Node-RED, accepted or dropped."""
        self.wait_for(what, lambda acc, drop: all(acc[k] + drop[k] >= dev.sent[k] for k in keys))

    def wait_ready(self, dev: Device, probes: Stream) -> None:
        """Publish probe windows until one comes out: Node-RED is subscribed and its flow writes.
        A probe published before the SUBSCRIBE is lost (no session yet), so another one (the next
        seq) follows every ``PROBE_S`` seconds until any of this call's probes is accepted."""
        seqs = itertools.count(1 + len([k for k in dev.sent if k[1] == probes.id]))
        sent: list[Key] = []

        def a_probe_passed() -> bool:
            accepted, _ = self.counts()
            return any(accepted[k] for k in sent)

        def probe() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"Node-RED exited\n{self.log()}"
            seq = next(seqs)
            sent.append(probes.key(seq))
            dev.publish(probes, [seq])
            return bool(poll(a_probe_passed, PROBE_S))

        assert poll(probe, WAIT, interval=0), f"Node-RED passed no probe window within {WAIT} s\n{self.log()}"


@pytest.fixture()
def nodered(tmp_path: Path) -> Iterator[Callable[[int, list[dict[str, Any]]], NodeRed]]:
    """``nodered(port, flow)`` -> a NodeRed (not started); every one is killed at teardown."""
    pinned = json.loads((NODERED_DIR / "package.json").read_text())["dependencies"]["node-red"]
    installed = json.loads((RED_JS.parent / "package.json").read_text())["version"]
    assert installed == pinned, f"node_modules has Node-RED {installed}, package.json pins {pinned}: run {INSTALL}"
    made: list[NodeRed] = []

    def make(port: int, flow: list[dict[str, Any]]) -> NodeRed:
        made.append(NodeRed(tmp_path / f"nodered{len(made)}", port, flow))
        return made[-1]

    yield make
    for red in made:
        red.kill()


def shipped_flow(*, dedup_store: str = "file", **broker_props: Any) -> list[dict[str, Any]]:
    """The committed flow; for the controls with ``broker_props`` changed on its mqtt-broker node
    or the de-dup state kept in another context store."""
    flow: list[dict[str, Any]] = json.loads(FLOW_FILE.read_text())
    next(n for n in flow if n["type"] == "mqtt-broker").update(broker_props)
    dedup = next(n for n in flow if n["type"] == "function")
    assert 'const STORE = "file";' in dedup["func"]
    dedup["func"] = dedup["func"].replace('const STORE = "file";', f"const STORE = {json.dumps(dedup_store)};")
    return flow


@dataclass
class Outcome:
    s1: Stream  # the stream published across the restart, seqs 1..last
    s2: Stream  # a new stream (state directory recreated) published after the restart, seqs 1..3
    last: int
    sent: Counter[Key]
    accepted: Counter[Key]
    dropped: Counter[Key]  # duplicates only
    log: str


def restart_scenario(broker: Broker, red: NodeRed) -> Outcome:
    """Windows while Node-RED is up, while it is down (broker restarted too) and after its restart."""
    s1, s2, probes = Stream(DEVICE), Stream(DEVICE), Stream(PROBE_DEVICE)
    last = 2 * N + 3
    dev = Device(broker.port)
    try:
        red.start()
        red.wait_ready(dev, probes)
        dev.publish(s1, range(1, N + 1))
        dev.publish(s1, [1, N])  # duplicates while up
        red.wait_answered(dev, [s1.key(s) for s in range(1, N + 1)], f"windows 1..{N}")
        accepted, _ = red.counts()
        assert [accepted[s1.key(s)] for s in range(1, N + 1)] == [1] * N, red.log()

        assert red.stop() == 0, red.log()
        # First in the offline queue: the last window accepted, again (a redelivery after a lost
        # PUBACK). A consumer that forgot its de-dup state takes it for the start of the stream.
        dev.publish(s1, [N])
        dev.publish(s1, range(N + 1, 2 * N + 1))
        broker.stop()  # its persistence must keep Node-RED's offline session and queue
        assert poll(lambda: not dev.client.is_connected(), WAIT), "fake device did not see the broker go"
        broker.start()
        dev.publish(s1, range(2 * N + 1, last + 1))

        red.start()
        red.wait_ready(dev, probes)
        dev.publish(s1, [1, N, 2 * N, last])  # duplicates after the restart
        dev.publish(s2, [1, 2, 3, 3])  # a new stream from seq 1; its repeated last window is the end marker
        red.wait_for("the end marker", lambda acc, drop: acc[s2.key(3)] > 0 and drop[s2.key(3)] > 0)
        accepted, dropped = red.counts()
        assert red.stop() == 0, red.log()
    finally:
        dev.close()
    return Outcome(s1, s2, last, dev.sent, accepted, dropped, red.log())


@needs_nodered
def test_nodered_takes_every_window_once_across_its_restart(
    broker_factory: Callable[..., Broker], nodered: Callable[[int, list[dict[str, Any]]], NodeRed]
) -> None:
    broker = broker_factory(persistence=True)
    o = restart_scenario(broker, nodered(broker.port, shipped_flow()))

    times = {s: o.accepted[o.s1.key(s)] for s in range(1, o.last + 1)}
    assert times == dict.fromkeys(times, 1), f"seq: times accepted\n{o.log}"
    assert [o.accepted[o.s2.key(s)] for s in (1, 2, 3)] == [1, 1, 1], o.log
    assert not [k for k in o.accepted if k[0] == DEVICE and k not in o.sent]
    # Every duplicate was dropped, the one queued first while Node-RED was down included:
    # the de-dup state outlived the process (persistent "file" context store).
    duplicates = {k: c - 1 for k, c in o.sent.items() if c > 1}
    n, last = N, o.last
    assert set(duplicates) == {o.s1.key(s) for s in (1, n, 2 * n, last)} | {o.s2.key(3)}
    assert {k: o.dropped[k] for k in duplicates if o.dropped[k] < duplicates[k]} == {}, o.log


@needs_nodered
def test_control_clean_session_loses_the_windows_sent_while_nodered_is_down(
    broker_factory: Callable[..., Broker], nodered: Callable[[int, list[dict[str, Any]]], NodeRed]
) -> None:
    """The scenario has teeth: with ``cleansession: true`` the offline queue is discarded at reconnect."""
    broker = broker_factory(persistence=True)
    o = restart_scenario(broker, nodered(broker.port, shipped_flow(cleansession=True)))

    down = range(N + 1, o.last + 1)
    republished = {2 * N, o.last}  # sent again after the restart, and then taken as new
    lost = [s for s in down if o.accepted[o.s1.key(s)] == 0]
    assert lost == [s for s in down if s not in republished], o.log
    assert [o.accepted[o.s2.key(s)] for s in (1, 2, 3)] == [1, 1, 1], o.log


@needs_nodered
def test_control_memory_context_takes_the_redelivered_window_twice(
    broker_factory: Callable[..., Broker], nodered: Callable[[int, list[dict[str, Any]]], NodeRed]
) -> None:
    """The scenario has teeth: de-dup state in the memory store is gone after the restart, so the
    window queued first (a repeat of the last one accepted) is taken as the start of the stream."""
    broker = broker_factory(persistence=True)
    o = restart_scenario(broker, nodered(broker.port, shipped_flow(dedup_store="default")))

    times = {s: o.accepted[o.s1.key(s)] for s in range(1, o.last + 1)}
    assert times == {**dict.fromkeys(times, 1), N: 2}, o.log


@needs_node
def test_dedup_unit_tests_pass() -> None:
    assert NODE is not None
    expected = sum(line.startswith("test(") for line in (NODERED_DIR / "test_dedup.js").read_text().splitlines())
    proc = subprocess.run(
        [NODE, "--test", "--test-reporter=tap", "test_dedup.js"],
        cwd=NODERED_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert expected >= 8 and f"# pass {expected}\n" in proc.stdout and "# fail 0\n" in proc.stdout, proc.stdout


def test_committed_flow_is_what_build_flow_generates(tmp_path: Path) -> None:
    build = [sys.executable, "build_flow.py", "--check"]
    proc = subprocess.run(build, cwd=NODERED_DIR, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # The check notices a stale flow: the same files with dedup.js edited after the flow was built.
    for name in ("build_flow.py", "dedup.js", FLOW_FILE.name):
        shutil.copy(NODERED_DIR / name, tmp_path / name)
    with (tmp_path / "dedup.js").open("a") as f:
        f.write("// edited\n")
    stale = subprocess.run(build, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and "out of date" in stale.stderr, stale.stderr


ATTENTION_KEYS = {"viewers", "viewer_rate", "attention_s", "viewers_by"}


def passers_by(looked: float, n: int) -> Tracks:
    """``n`` visitors who each looked at the screen for ``looked`` seconds of their 6 s in view."""
    return (VisitorEnded(6.0, None, attention_s=looked),) * n


@needs_nodered
def test_nodered_carries_viewers_and_attention_as_the_device_sent_them(
    mqtt_broker: Broker, nodered: Callable[[int, list[dict[str, Any]]], NodeRed]
) -> None:
    # min_cell 5: 8 viewers and 6 who did not look are published, 8 and 2 are not (2 is too few).
    published = passers_by(2.5, 8) + passers_by(0.0, 6)
    streams = {
        "viewers": Stream(
            "cam-viewers", ended=[published, passers_by(2.0, 8) + passers_by(0.5, 2), passers_by(0.0, 6)]
        ),
        "attention off": Stream("cam-attention-off", AttentionConfig(enabled=False), ended=[published]),
        "schema 2": Stream("cam-schema-2", AttentionConfig(enabled=False), ended=[published], schema=2),
    }
    red = nodered(mqtt_broker.port, shipped_flow())
    dev = Device(mqtt_broker.port)
    try:
        red.start()
        red.wait_ready(dev, Stream(PROBE_DEVICE))
        for stream in streams.values():
            dev.publish(stream, [1, 2, 3])
        red.wait_answered(dev, [s.key(q) for s in streams.values() for q in (1, 2, 3)], "the windows")
        assert red.stop() == 0, red.log()
    finally:
        dev.close()
    accepted = {(r["device"], r["seq"]): r for r in red.accepted.read()}
    for stream in streams.values():  # every window as it was sent
        assert [accepted[stream.device, q] for q in (1, 2, 3)] == [json.loads(stream.payload(q)) for q in (1, 2, 3)]

    viewers = [accepted["cam-viewers", q] for q in (1, 2, 3)]
    assert [(w["visitors"], w["dwell_s"]["mean"]) for w in viewers] == [(14, 6.0), (10, 6.0), (6, 6.0)]
    assert [(w["viewers"], w["viewer_rate"], w["attention_s"]["sum"]) for w in viewers] == [
        (8, 0.571, 20.0),
        (None, None, None),  # 8 viewers of 10 would tell that 2 did not look
        (0, 0.0, 0.0),
    ]
    assert viewers[0]["schema"] == SCHEMA and viewers[0]["attention_s"]["median"] == 2.5
    for name in ("attention off", "schema 2"):
        window = accepted[streams[name].device, 1]
        assert (window["visitors"], window["dwell_s"]["mean"]) == (14, 6.0) and not ATTENTION_KEYS & set(window)
    assert accepted["cam-schema-2", 1]["schema"] == 2


PEOPLE_KEYS = {"people", "people_with_face", "passers_by", "stayers", "crossings", "zones"}
DOOR = LineConfig(start=(0.0, 0.5), end=(1.0, 0.5))
ZONES = (("aisle", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))), ("till", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0))))


def faces(dwell_s: float, n: int, *, in_person: bool) -> Tracks:
    """``n`` visitors seen for ``dwell_s``; one ``in_person`` is counted by its person track, any
    other is a person of its own (its face was never inside a person's box)."""
    return (VisitorEnded(dwell_s, None, in_person=in_person),) * n


def persons(dwell_s: float, n: int, *, with_face: bool = False) -> PeopleUpdate:
    """``n`` person tracks that ended after ``dwell_s``."""
    return PeopleUpdate(ended=(PersonEnded(dwell_s, with_face),) * n)


def people_of(window: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(window[k] for k in ("people", "people_with_face", "passers_by", "stayers"))


@needs_nodered
def test_nodered_carries_people_crossings_and_zones_as_the_device_sent_them(
    mqtt_broker: Broker, nodered: Callable[[int, list[dict[str, Any]]], NodeRed]
) -> None:
    # min_cell 5, people.min_dwell_s 10. Window 1, 23 people: 6 visitors whose face was never in
    # a person's box (6 s), 5 persons with the faces of 5 more visitors (14 s), 7 persons without a
    # face (3 s), 5 without (20 s): 11 with a face, 13 passers-by, 10 stayers, all published.
    counted: list[Tracks] = [faces(6.0, 6, in_person=False) + faces(12.0, 5, in_person=True)]
    tracked: list[Persons] = [(persons(14.0, 5, with_face=True), persons(3.0, 7), persons(20.0, 5))]
    # Window 2, 8 people: 6 visitors, 2 persons without a face: the 2 would show through
    # people_with_face, so it is null; 8 passers-by and 0 stayers are published (0 is safe).
    counted.append(faces(6.0, 6, in_person=False))
    tracked.append((persons(3.0, 2),))
    # Window 3, 3 people: too few, every people key null. Window 4: nobody, every people key 0.
    counted.append(())
    tracked.append((persons(3.0, 3),))
    # At the door: 6 in (published) and 2 out (null); per person frame 6, 4, 2 people in the aisle
    # (peak 6, mean 4.0) and 0, 2, 1 at the till (peak 2: both null). Window 2 there: all 0.
    door = (
        PeopleUpdate(ended=(PersonEnded(4.0, False, 1, 0),) * 4, zones=(6, 0)),
        PeopleUpdate(ended=(PersonEnded(4.0, False, 1, 1),) * 2, zones=(4, 2)),
        PeopleUpdate(zones=(2, 1)),
    )
    published = faces(6.0, 6, in_person=False)
    streams = {
        "people": Stream("cam-people", people=PeopleConfig(), ended=counted, persons=tracked),
        "line and zones": Stream(
            "cam-door", people=PeopleConfig(line=DOOR, zones=ZONES), persons=[door, (PeopleUpdate(zones=(0, 0)),)]
        ),
        "people off": Stream("cam-people-off", people=PeopleConfig(enabled=False), ended=[published]),
        "schema 3": Stream("cam-schema-3", ended=[published], schema=3),  # a device from before people counting
    }
    seqs = (1, 2, 3, 4)
    red = nodered(mqtt_broker.port, shipped_flow())
    dev = Device(mqtt_broker.port)
    try:
        red.start()
        red.wait_ready(dev, Stream(PROBE_DEVICE))
        for stream in streams.values():
            dev.publish(stream, seqs)
        red.wait_answered(dev, [s.key(q) for s in streams.values() for q in seqs], "the windows")
        assert red.stop() == 0, red.log()
    finally:
        dev.close()
    accepted = {(r["device"], r["seq"]): r for r in red.accepted.read()}
    for stream in streams.values():  # every window as it was sent
        assert [accepted[stream.device, q] for q in seqs] == [json.loads(stream.payload(q)) for q in seqs]

    people = [accepted["cam-people", q] for q in seqs]
    assert [(w["schema"], w["visitors"]) for w in people] == [(SCHEMA, 11), (SCHEMA, 6), (SCHEMA, 0), (SCHEMA, 0)]
    assert [people_of(w) for w in people] == [
        (23, 11, 13, 10),
        (8, None, 8, 0),  # 2 without a face among 8
        (None, None, None, None),  # 3 people
        (0, 0, 0, 0),  # nobody: a count, not a suppression
    ]
    assert not {"crossings", "zones"} & set().union(*people)  # no line, no zones configured
    assert "people_with_face" in people[1]["suppressed"] and "people" in people[2]["suppressed"]
    assert "people" not in people[3]["suppressed"]

    door_windows = [accepted["cam-door", q] for q in (1, 2)]
    assert [people_of(w) for w in door_windows] == [(6, 0, 6, 0), (0, 0, 0, 0)]
    assert [w["crossings"] for w in door_windows] == [{"in": 6, "out": None}, {"in": 0, "out": 0}]
    assert [w["zones"] for w in door_windows] == [
        {"aisle": {"peak": 6, "mean": 4.0}, "till": {"peak": None, "mean": None}},
        {"aisle": {"peak": 0, "mean": 0.0}, "till": {"peak": 0, "mean": 0.0}},
    ]
    assert {"crossings.out", "zones.till.peak", "zones.till.mean"} <= set(door_windows[0]["suppressed"])

    for name in ("people off", "schema 3"):
        window = accepted[streams[name].device, 1]
        assert (window["visitors"], window["dwell_s"]["mean"]) == (6, 6.0) and not PEOPLE_KEYS & set(window)
        assert window["viewers"] == 0  # the rest of the window is still there
    assert accepted["cam-schema-3", 1]["schema"] == 3
