"""``edge demo``: the whole product on this machine, with nothing to configure.

Generates a sample video of people walking past (real public-domain faces,
known ground truth), starts a private mosquitto on a free local port, runs
the daemon on the video with short windows and prints every message the
broker delivers, as a dashboard would receive it. Ctrl-C stops everything;
the open window is published as partial first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

import paho.mqtt.client as mqtt

from edge.config import parse_config
from edge.daemon import Daemon, install_signal_handlers
from edge.scenes import random_scene, write_video

log = logging.getLogger(__name__)


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(binary: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)  # polling a port we just started; bounded by the deadline
    proc.kill()
    raise RuntimeError("mosquitto did not start listening within 10 s")


def subscribe(port: int, prefix: str, out: TextIO) -> mqtt.Client:
    """Print every message under the device's topics (and Home Assistant discovery, briefly)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-demo-viewer")

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        text = msg.payload.decode(errors="replace")
        if msg.topic.startswith("homeassistant/"):
            out.write(f"{msg.topic} (Home Assistant discovery, retained)\n")
        else:
            try:
                text = json.dumps(json.loads(text))
            except ValueError:
                pass
            out.write(f"{msg.topic} {text}\n")
        out.flush()

    client.on_message = on_message
    client.on_connect = lambda c, *_: (c.subscribe(prefix + "#", qos=1), c.subscribe("homeassistant/#", qos=1))
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    return client


def run(duration_s: float | None, window_s: int, workdir: Path | None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    work = Path(workdir or tempfile.mkdtemp(prefix="edge-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    video = work / "sample.avi"
    if not video.exists():
        out.write(f"generating a 60 s sample video with walking visitors: {video}\n")
        write_video(random_scene(14, 60.0, fps=10.0, seed=7), video)
    stop = threading.Event()
    install_signal_handlers(stop)
    binary = find_mosquitto()
    broker = None
    doc: dict = {
        "device_id": "demo-cam",
        "site": "demo",
        "source": {"type": "file", "path": str(video), "loop": True, "realtime": True},
        "aggregation": {"window_s": window_s, "min_cell": 2},
        "state_dir": str(work / "state"),
    }
    viewer = None
    timer: threading.Timer | None = None
    try:
        if binary is None:
            out.write("mosquitto is not installed (Debian/Raspberry Pi OS: sudo apt install mosquitto); "
                      "printing windows to stdout instead of publishing them\n")
            doc["sink"] = {"type": "jsonl", "path": "-"}
        else:
            broker, port = start_broker(binary, work)
            out.write(f"mosquitto listening on 127.0.0.1:{port}; try: mosquitto_sub -p {port} -t 'edge/#' -v\n")
            doc["sink"] = {"type": "mqtt", "host": "127.0.0.1", "port": port, "health_interval_s": 10}
            viewer = subscribe(port, "edge/demo-cam/", out)
        config = parse_config(doc, source="edge demo")
        out.write(f"daemon: {window_s} s windows, minimum cell 2; Ctrl-C to stop\n")
        out.flush()
        if duration_s:
            timer = threading.Timer(duration_s, stop.set)
            timer.start()
        return Daemon(config, stop).run()
    finally:
        stop.set()
        if timer is not None:
            timer.cancel()
        if viewer is not None:
            time.sleep(0.5)  # let the last retained/QoS1 messages reach the viewer before it disconnects
            viewer.loop_stop()
            viewer.disconnect()
        if broker is not None:
            broker.terminate()
            broker.wait(timeout=10)
