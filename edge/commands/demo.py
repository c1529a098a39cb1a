"""``edge demo``: the whole product on this machine, with nothing to configure.

Generates a sample video of people walking past (real public-domain faces,
known ground truth; cached in the work directory), starts a private mosquitto
on a free local port, runs the daemon on the video with short windows and
prints every message the broker delivers, as a dashboard would receive it.

Ctrl-C stops everything without losing anything: the terminal's SIGINT reaches
the demo but not the broker (it runs in its own session), so the daemon can
publish the open window as partial, the viewer prints it, and only then does
the demo stop the broker.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from edge.commands.options import Subparsers, add_command

if TYPE_CHECKING:  # imported where used: every command's parser imports this module (paho-mqtt is 9 MB)
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

DEVICE_ID = "demo-cam"
VIDEO_NAME = "sample.avi"
# Generous: covers the sink's close (up to its close_timeout_s for the last PUBACK) on a loaded machine.
GOODBYE_TIMEOUT_S = 15.0
_PR_SET_PDEATHSIG = 1


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "demo", "everything on this machine: sample video, local broker, daemon, live messages")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--window", type=int, default=10, help="window length in seconds (default: 10)")
    p.add_argument("--workdir", type=Path, default=None, help="where the video, broker config and state go")
    p.add_argument(
        "--broker",
        type=host_port,
        metavar="HOST:PORT",
        help="publish to this broker (e.g. a fleet's, so `edge collect` stores the demo) instead of a private one",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_demo(args.duration, args.window, args.workdir, broker_at=args.broker)


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (argparse adds the option's name to the refusal)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as broker.local:1883, got {text!r}")
    return host, int(port)


def default_workdir() -> Path:
    """A per-user cache directory, so the sample video is generated once, not on every run."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "edge-demo"


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_video(work: Path, out: TextIO) -> Path:
    """The sample video, generated on first use; written under a temporary name so an interrupted
    generation never leaves a truncated file that later runs would take for the cached video."""
    video = work / VIDEO_NAME
    if video.exists():
        out.write(f"sample video: {video} (cached)\n")
        return video
    out.write(f"generating a 60 s sample video with walking visitors (once; cached for later runs): {video}\n")
    out.flush()
    started = time.monotonic()
    partial = work / f".{VIDEO_NAME}.{os.getpid()}.avi"
    from edge.scenes import random_scene, write_video  # here: every command's parser imports this module

    try:
        write_video(random_scene(14, 60.0, fps=10.0, seed=7), partial)
        partial.with_suffix(".truth.json").replace(video.with_suffix(".truth.json"))
        partial.replace(video)
    finally:
        partial.unlink(missing_ok=True)
        partial.with_suffix(".truth.json").unlink(missing_ok=True)
    out.write(f"sample video ready in {time.monotonic() - started:.1f} s\n")
    return video


def _die_with_parent() -> None:
    """Runs in the broker's child process: SIGTERM it if the demo dies without stopping it (Linux).

    The broker is in its own session, so nothing else would ever stop it after a crash or SIGKILL.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def start_broker(binary: str, workdir: Path, extra_conf: str = "") -> tuple[subprocess.Popen[bytes], int]:
    """A private mosquitto in its own session: a terminal's Ctrl-C goes to the foreground process
    group, and the broker must outlive the daemon's final publish, so the demo stops it itself.
    ``extra_conf``: more mosquitto.conf lines (the fleet load test lifts the queue limits)."""
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_conf}")
    log_path = workdir / "mosquitto.log"  # a file, not a pipe nobody reads (a full pipe would block the broker)
    with log_path.open("wb") as broker_log:
        proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=broker_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # safe here: the demo has started no threads yet
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-500:]
            raise RuntimeError(f"mosquitto exited with {proc.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)  # between connection attempts: nothing to wait on but the port
    stop_broker(proc)
    raise RuntimeError(f"mosquitto did not start listening within 10 s (log: {log_path})")


def stop_broker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (mosquitto's orderly shutdown), SIGKILL if it does not go."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log.warning("mosquitto (pid %d) ignored SIGTERM for 10 s; killing it", proc.pid)
        proc.kill()
        proc.wait(timeout=10)


class Viewer:
    """Prints every message under the device's topics (and Home Assistant discovery, briefly).

    It also tells the demo when the daemon has said goodbye (a live ``offline`` status, which the
    sink publishes only after the broker acknowledged the last window), so the broker is stopped
    only after the final partial window has been delivered and printed.
    """

    def __init__(self, port: int, prefix: str, out: TextIO, host: str = "127.0.0.1") -> None:
        import paho.mqtt.client as mqtt

        self.out = out
        self.prefix = prefix
        self.status_topic = prefix + "status"
        self.subscribed = threading.Event()
        self.goodbye = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-demo-viewer")
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        client.subscribe([(self.prefix + "#", 1), ("homeassistant/#", 1)])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        text = msg.payload.decode(errors="replace")
        if msg.topic.startswith("homeassistant/"):
            self.out.write(f"{msg.topic} (Home Assistant discovery, retained)\n")
        else:
            with contextlib.suppress(ValueError):
                text = json.dumps(json.loads(text))
            self.out.write(f"{msg.topic} {text}\n")
        self.out.flush()
        if msg.topic == self.status_topic and text == "offline" and not msg.retain:
            self.goodbye.set()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def run_demo(
    duration_s: float | None,
    window_s: int,
    workdir: Path | None,
    out: TextIO | None = None,
    broker_at: tuple[str, int] | None = None,
) -> int:
    """Run the demo until Ctrl-C/SIGTERM (or ``duration_s``); 0 after a clean stop. ``broker_at``
    (host, port): publish to that broker (a fleet's, so its collector stores the demo's windows)
    instead of a private one."""
    from edge.daemon import Daemon
    from edge.settings import parse_config
    from edge.signals import install_signal_handlers

    out = out or sys.stdout
    work = Path(workdir) if workdir is not None else default_workdir()
    work.mkdir(parents=True, exist_ok=True)
    try:
        video = ensure_video(work, out)
    except KeyboardInterrupt:
        out.write("interrupted while generating the sample video; nothing was started\n")
        return 130
    stop = threading.Event()
    install_signal_handlers(stop, "closing the open window", logging.getLogger("edge.demo"))
    binary = find_mosquitto()
    broker: subprocess.Popen[bytes] | None = None
    viewer: Viewer | None = None
    timer: threading.Timer | None = None
    doc: dict[str, Any] = {
        "device_id": DEVICE_ID,
        "site": "demo",
        "source": {"type": "file", "path": str(video), "loop": True, "realtime": True},
        "aggregation": {"window_s": window_s, "min_cell": 2},
        "state_dir": str(work / "state"),
    }
    rc: int | None = None
    try:
        if broker_at is not None:
            host, port = broker_at
            out.write(
                f"publishing to the broker at {host}:{port}; try: mosquitto_sub -h {host} -p {port} -t 'edge/#' -v\n"
            )
            doc["sink"] = {"type": "mqtt", "host": host, "port": port, "health_interval_s": 10}
            viewer = Viewer(port, f"edge/{DEVICE_ID}/", out, host)
            if not viewer.subscribed.wait(10):
                log.warning("the viewer did not subscribe within 10 s; early messages may not be shown")
        elif binary is None:
            out.write(
                "mosquitto is not installed (Debian/Raspberry Pi OS: sudo apt install mosquitto); "
                "printing windows to stdout instead of publishing them\n"
            )
            doc["sink"] = {"type": "jsonl", "path": "-"}
        else:
            broker, port = start_broker(binary, work)
            out.write(f"mosquitto listening on 127.0.0.1:{port}; try: mosquitto_sub -p {port} -t 'edge/#' -v\n")
            doc["sink"] = {"type": "mqtt", "host": "127.0.0.1", "port": port, "health_interval_s": 10}
            viewer = Viewer(port, f"edge/{DEVICE_ID}/", out)
            if not viewer.subscribed.wait(10):
                log.warning("the viewer did not subscribe within 10 s; early messages may not be shown")
        config = parse_config(doc, source="edge demo")
        out.write(
            f"daemon: {window_s} s windows, minimum cell 2; Ctrl-C to stop\n"
            "reading a window: `visitors` counts people who arrived in it; gender, age, expression and\n"
            "dwell_s describe people whose visit ended in it (settled from their whole visit), so the two\n"
            "need not add up; a count of 1 (under the minimum cell) is published as null\n"
        )
        out.flush()
        if duration_s:
            timer = threading.Timer(duration_s, stop.set)
            timer.start()
        rc = Daemon(config, stop).run()
        return rc
    finally:
        stop.set()
        if timer is not None:
            timer.cancel()
        if viewer is not None:
            # The daemon has closed its sink; wait (event-driven) until its goodbye, queued behind the
            # final window, has reached the viewer. Skipped when the daemon failed: no goodbye may come.
            if rc == 0 and not viewer.goodbye.wait(GOODBYE_TIMEOUT_S):
                log.warning("the daemon's final messages did not reach the viewer within %g s", GOODBYE_TIMEOUT_S)
            viewer.close()
        if broker is not None:
            stop_broker(broker)
