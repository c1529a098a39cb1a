"""The product end to end: generated video -> `edge run` -> real mosquitto -> subscriber."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from daemon_proc import spawn_daemon, watch
from mqtt_broker import HOST, Broker
from mqtt_clients import Subscriber
from paho.mqtt.enums import CallbackAPIVersion
from payload_schema import check

from edge.cli import main
from edge.daemon import Daemon
from edge.scenes import Scene, Visitor, write_video
from edge.settings import parse_config
from edge.window import SCHEMA

DEVICE = "e2e-cam"
COUNTS, STATUS = f"edge/{DEVICE}/counts", f"edge/{DEVICE}/status"
KEYS = {
    "schema",
    "device",
    "site",
    "seq",
    "stream",
    "observed_s",
    "today",
    "window",
    "visitors",
    "faces",
    "dwell_s",
    "people",
    "people_with_face",
    "passers_by",
    "stayers",
    "viewers",
    "viewer_rate",
    "attention_s",
    "viewers_by",
    "gender",
    "age",
    "expression",
    "suppressed",
}


def walker(enter: float, dwell: float, lane: float) -> Visitor:
    return Visitor(enter, enter + dwell, lane, 60.0, 1 if lane < 0.5 else -1, False, (1.0, 1.0, 1.0))


def doc(tmp_path: Path, video: Path, port: int, *, realtime: bool, window_s: int) -> dict:
    return {
        "device_id": DEVICE,
        "site": "e2e",
        "source": {"type": "file", "path": str(video), "realtime": realtime, "loop": realtime},
        "aggregation": {"window_s": window_s, "min_cell": 1},
        "sink": {"type": "mqtt", "host": HOST, "port": port, "keepalive": 2, "health_interval_s": 1},
        "state_dir": str(tmp_path / "state"),
    }


def seqs(sub: Subscriber) -> list[int]:
    """Window seqs in first-arrival order (consumers de-duplicate on (device, seq))."""
    return list(dict.fromkeys(json.loads(m.payload)["seq"] for m in list(sub.messages) if m.topic == COUNTS))


def test_video_to_daemon_to_broker_to_subscriber(mqtt_broker: Broker, tmp_path: Path) -> None:
    scene = Scene(
        640,
        480,
        10.0,
        30.0,
        (walker(2.0, 5.0, 0.25), walker(3.0, 6.0, 0.75), walker(12.0, 5.0, 0.25), walker(22.0, 5.0, 0.75)),
    )
    video = write_video(scene, tmp_path / "scene.avi")
    sub = Subscriber(mqtt_broker.port, [f"edge/{DEVICE}/#"])
    try:
        assert (
            Daemon(
                parse_config(doc(tmp_path, video, mqtt_broker.port, realtime=False, window_s=10)), threading.Event()
            ).run()
            == 0
        )
        assert sub.wait_for(lambda ms: any(m.topic == STATUS and m.payload == "offline" for m in ms))
        windows = [json.loads(m.payload) for m in sub.messages if m.topic == COUNTS]
        healths = [json.loads(m.payload) for m in sub.messages if m.topic == f"edge/{DEVICE}/health" and m.payload]
    finally:
        sub.close()
    seqs = [w["seq"] for w in windows]
    assert seqs == list(range(1, len(seqs) + 1))
    assert sum(w["visitors"] for w in windows) == len(scene.visitors)
    for w in windows:
        check("window", w)
        assert set(w) == KEYS and w["device"] == DEVICE and w["schema"] == SCHEMA
    for health in healths:
        check("health", health)
    assert healths and healths[-1]["spool"]["depth"] >= 0 and "mqtt" in healths[-1]
    assert windows[-1]["window"]["partial"] is True


def test_sigkilled_daemon_delivers_spooled_windows_after_restart(
    broker_factory: Callable[..., Broker], tmp_path: Path
) -> None:
    broker = broker_factory(start=False)
    video = write_video(Scene(640, 480, 10.0, 6.0, (walker(1.0, 4.0, 0.5),)), tmp_path / "loop.avi")
    config = doc(tmp_path, video, broker.port, realtime=True, window_s=1)
    seen: list[str] = []
    proc = spawn_daemon(tmp_path, config)
    try:
        assert watch(proc.stderr, "window 3 ", seen).wait(60), "".join(seen)  # three windows spooled, no broker
        proc.kill()
        proc.wait(timeout=10)
    finally:
        proc.kill()
    broker.start()
    sub = Subscriber(broker.port, [COUNTS])
    seen2: list[str] = []
    proc = spawn_daemon(tmp_path, config)
    try:
        watch(proc.stderr, "\0", seen2)
        assert sub.wait_for(lambda _: len(seqs(sub)) >= 6, timeout=60), "".join(seen2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        sub.close()
    got = seqs(sub)
    assert got[:3] == [1, 2, 3]  # the spooled windows, oldest first
    assert got == list(range(1, len(got) + 1))  # and numbering continued after the restart


def test_killed_daemon_reads_offline_through_its_last_will(mqtt_broker: Broker, tmp_path: Path) -> None:
    video = write_video(Scene(640, 480, 10.0, 4.0, ()), tmp_path / "empty.avi")
    sub = Subscriber(mqtt_broker.port, [STATUS])
    proc = spawn_daemon(tmp_path, doc(tmp_path, video, mqtt_broker.port, realtime=True, window_s=60))
    try:
        assert sub.wait_for(lambda ms: any(m.payload == "online" for m in ms), timeout=60)
        proc.kill()
        assert sub.wait_for(lambda ms: ms[-1].payload == "offline", timeout=15)  # keepalive 2 s -> will at ~3 s
    finally:
        proc.kill()
        sub.close()


def test_dashboards_follow_the_config_and_forget_removes_the_device(
    mqtt_broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = write_video(Scene(640, 480, 10.0, 2.0, ()), tmp_path / "empty.avi")
    base = doc(tmp_path, video, mqtt_broker.port, realtime=False, window_s=10)
    assert Daemon(parse_config(base), threading.Event()).run() == 0
    discovery = f"homeassistant/sensor/{DEVICE}/"
    first = retained(mqtt_broker.port, ["homeassistant/#"])
    assert discovery + "gender_female/config" in first and discovery + "age_65_plus/config" in first
    assert discovery + "viewers/config" in first and discovery + "viewers_age_65_plus/config" in first

    # Gender and attention switched off, other age brackets: their entities leave Home Assistant
    # (empty retained configs).
    changed = dict(
        base,
        attributes={"gender": False},
        aggregation={"window_s": 10, "age_brackets": [0, 30]},
        attention={"enabled": False},
    )
    assert Daemon(parse_config(changed), threading.Event()).run() == 0
    second = retained(mqtt_broker.port, ["homeassistant/#"])
    objects = {t.removeprefix(discovery).removesuffix("/config") for t in second}
    assert not {o for o in objects if o.startswith(("gender_", "viewer", "attention"))}
    assert {o for o in objects if o.startswith("age_")} == {"age_0_29", "age_30_plus", "age_unknown"}
    assert json.loads(second[discovery + "visitors/config"])["expire_after"] == 2 * 10 + 60

    # `edge forget` removes the device: discovery configs, status, health.
    config_file = tmp_path / "changed.yaml"
    config_file.write_text(yaml.safe_dump(changed))
    assert main(["forget", "--config", str(config_file)]) == 0
    assert f"cleared {len(second) + 2} retained message(s)" in capsys.readouterr().out
    assert retained(mqtt_broker.port, ["homeassistant/#", f"edge/{DEVICE}/#"]) == {}


def retained(port: int, filters: list[str]) -> dict[str, str]:
    """Retained non-empty messages under ``filters`` (a marker published afterwards ends the snapshot)."""
    marker = f"test/marker/{time.monotonic_ns()}"
    sub = Subscriber(port, [*filters, marker])
    try:
        probe = mqtt.Client(CallbackAPIVersion.VERSION2)
        probe.connect(HOST, port)
        probe.loop_start()
        probe.publish(marker, "x", qos=1).wait_for_publish(10)
        probe.disconnect()
        probe.loop_stop()
        assert sub.wait_for(lambda ms: any(m.topic == marker for m in ms))
        return {m.topic: m.payload for m in sub.messages if m.retain and m.payload}
    finally:
        sub.close()
