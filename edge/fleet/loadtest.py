"""A simulated fleet through the real broker into a real collector: windows/s, RSS, latency.

``python -m edge.fleet.loadtest --devices 10000 --window-s 60 --minutes 10`` starts
its own mosquitto on a free port and a throwaway PostgreSQL database, runs
``edge collect`` as a separate process (as in production), and publishes from
publisher processes one window per device per ``window_s`` (divided by
``--speed`` for an accelerated clock), each device at its own phase, QoS 1.
Device ids are distinct; they share a few MQTT connections (the collector's
work does not depend on how many connections the broker terminates).

It prints, per reporting interval and in total: windows published and
stored per second, the collector's RSS, and end-to-end latency (publish to
committed row, from the row's ``stored_at``) at p50/p99/max. Measured, not
asserted: the figures go into the README. SIGINT (Ctrl-C), SIGTERM or SIGHUP end
the run early, without figures, and everything it started is still cleaned up.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge.commands.demo import find_mosquitto, start_broker, stop_broker
from edge.fleet.config import parse_fleet_config
from edge.fleet.load_messages import health_message, window_message
from edge.signals import install_signal_handlers

log = logging.getLogger(__name__)
HOST = "127.0.0.1"
COLLECTOR_ID = "load-collector"
# The collector is always connected: no per-session queue or in-flight limit should throttle it. The
# default log types plus "subscribe", so that the run can see the collector's subscription arrive.
BROKER_CONF = (
    "max_queued_messages 0\nmax_inflight_messages 0\n"
    "log_type error\nlog_type warning\nlog_type notice\nlog_type information\nlog_type subscribe\n"
)
STOPPED = 130  # the exit status when a signal ended the run early (as a shell reports Ctrl-C)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _poll(condition: Callable[[], bool], timeout: float, interval: float, stop: threading.Event) -> bool:
    """Whether ``condition()`` held within ``timeout`` seconds, checked every ``interval`` seconds;
    False at once when ``stop`` is set (the pause between checks is a wait on it)."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        stop.wait(interval)
    return False


def _publisher(
    port: int,
    first: int,
    count: int,
    window_s: int,
    health_s: float,
    speed: float,
    t0: float,
    duration: float,
    out: Any,
) -> None:
    """Devices ``first..first+count-1`` on one connection: a window every ``window_s`` and a retained
    health message every ``health_s`` (simulated seconds); sends publish times back through ``out``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the main process ends the run
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"loadgen-{first}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(HOST, port, keepalive=30)
    client.loop_start()
    rng = np.random.default_rng(first)
    period = window_s / speed
    phases = rng.uniform(0, period, count)
    streams = [str(uuid.uuid4()) for _ in range(count)]
    seqs = np.zeros(count, dtype=np.int64)
    nxt = phases.copy()
    health_period = health_s / speed if health_s > 0 else float("inf")
    hnxt = rng.uniform(0, min(health_period, 1e9), count)
    healths = np.zeros(count, dtype=np.int64)
    sent: list[tuple[int, int, float]] = []  # (device index, seq, wall time of publish)
    last: mqtt.MQTTMessageInfo | None = None
    sim_epoch = datetime(2026, 12, 1, tzinfo=timezone.utc)
    while True:
        i, h = int(np.argmin(nxt)), int(np.argmin(hnxt))
        if hnxt[h] < nxt[i]:
            if hnxt[h] >= duration:
                break
            wait = t0 + hnxt[h] - time.time()
            if wait > 0:
                time.sleep(wait)  # pacing: each device publishes at its own due time
            healths[h] += 1
            last = client.publish(
                f"edge/dev{first + h}/health", health_message(f"dev{first + h}", int(healths[h])), qos=1, retain=True
            )
            hnxt[h] += health_period
            continue
        due = t0 + nxt[i]
        if nxt[i] >= duration:
            break
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)  # pacing: each device publishes at its own due time
        seqs[i] += 1
        end = sim_epoch + timedelta(seconds=window_s * int(seqs[i]) + phases[i] * speed)
        last = client.publish(
            f"edge/dev{first + i}/counts",
            window_message(f"dev{first + i}", streams[i], int(seqs[i]), end, window_s),
            qos=1,
        )
        sent.append((first + i, int(seqs[i]), time.time()))
        nxt[i] += period
    # Let the last PUBACKs arrive before disconnecting (a broker acknowledges QoS 1 in order, so the
    # last message's PUBACK comes last); a message that could not be sent has nothing to wait for.
    if last is not None:
        with contextlib.suppress(RuntimeError):
            last.wait_for_publish(30.0)
    client.disconnect()
    client.loop_stop()
    out.put((streams, sent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.fleet.loadtest", description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--window-s", type=int, default=60)
    p.add_argument("--health-s", type=float, default=30.0, help="device health interval (0: none)")
    p.add_argument("--speed", type=float, default=1.0, help="clock acceleration (2: windows come twice as often)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--publishers", type=int, default=4, help="publisher processes (one connection each)")
    p.add_argument("--report-s", type=float, default=60.0)
    p.add_argument("--pg", default="host=127.0.0.1 user=postgres dbname=postgres", help="libpq string of an admin")
    p.add_argument("--batch-wait-s", type=float, default=0.2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    mosquitto = find_mosquitto()
    if mosquitto is None:
        raise SystemExit("mosquitto is not installed (apt install mosquitto)")
    stop = threading.Event()  # the run's one stop: every wait below ends on it
    install_signal_handlers(stop, "ending the load test early (no figures) and cleaning up", log)
    work = Path(tempfile.mkdtemp(prefix="edge-load-"))
    broker, port = start_broker(mosquitto, work, BROKER_CONF)
    broker_log = work / "mosquitto.log"  # start_broker's
    dbname = f"edge_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    info = psycopg.conninfo.conninfo_to_dict(args.pg)
    config = {
        "mqtt": {"host": HOST, "port": port, "client_id": COLLECTOR_ID},
        "database": {
            "host": info.get("host", HOST),
            "port": int(str(info.get("port", 5432))),
            "dbname": dbname,
            "username": info.get("user"),
            "sslmode": "disable",
        },
        "batch": {"max_wait_s": args.batch_wait_s},
        "health_interval_s": 30,
        "log_level": "WARNING",
    }
    collector: subprocess.Popen[bytes] | None = None
    procs: list[Any] = []
    try:
        mqtt_config = parse_fleet_config(config).mqtt
        # The broker logs each subscription as "<time>: <client id> <qos> <filter>".
        subscription = f": {COLLECTOR_ID} 1 {mqtt_config.subscription(mqtt_config.topics.counts)}\n"
        (work / "collector.yaml").write_text(yaml.safe_dump(config))
        collector = started = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "collect", "--config", str(work / "collector.yaml")],
            stdout=(work / "collector.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        with psycopg.connect(args.pg, dbname=dbname, autocommit=True) as db:

            def ready() -> bool:
                """Migrated and subscribed to the windows, so that the fleet's first ones are not lost."""
                if started.poll() is not None:
                    raise RuntimeError("collector exited:\n" + (work / "collector.log").read_text())
                migrated = db.execute("SELECT to_regclass('windows') IS NOT NULL").fetchone()[0]  # type: ignore[index]
                return bool(migrated) and subscription in broker_log.read_text(errors="replace")

            if not _poll(ready, 60, 0.1, stop):
                if stop.is_set():
                    return STOPPED
                raise RuntimeError("collector did not start:\n" + (work / "collector.log").read_text())
            duration = args.minutes * 60.0
            t0 = time.time() + 1.0
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            per = -(-args.devices // args.publishers)
            timing = (args.window_s, args.health_s, args.speed, t0, duration)
            spans = [
                (k * per, min(per, args.devices - k * per)) for k in range(args.publishers) if k * per < args.devices
            ]
            procs = [ctx.Process(target=_publisher, args=(port, first, n, *timing, out)) for first, n in spans]
            for proc in procs:
                proc.start()
            rate = args.devices * args.speed / args.window_s
            log.info(
                "fleet of %d devices, %d s windows, health every %.0f s, speed %.1f: %.1f windows/s"
                " (+ %.1f health/s) for %.1f min; collector pid %d",
                args.devices,
                args.window_s,
                args.health_s,
                args.speed,
                rate,
                args.devices * args.speed / args.health_s if args.health_s > 0 else 0.0,
                args.minutes,
                collector.pid,
            )
            rss: list[float] = []
            cpu0 = _cpu_s(collector.pid)
            last_n, last_t = 0, time.time()
            stop_at = t0 + duration
            while time.time() < stop_at + 5:
                if stop.wait(min(args.report_s, max(0.5, stop_at + 5 - time.time()))):  # until the next report
                    return STOPPED
                n = int(db.execute("SELECT count(*) FROM windows").fetchone()[0])  # type: ignore[index]
                now = time.time()
                rss.append(_rss_mb(collector.pid))
                log.info(
                    "t=%5.0f s  stored %7d  %6.1f windows/s  collector RSS %.1f MB",
                    now - t0,
                    n,
                    (n - last_n) / (now - last_t),
                    rss[-1],
                )
                last_n, last_t = n, now
            if any(proc.exitcode not in (None, 0) for proc in procs):
                raise RuntimeError("a publisher process failed (its traceback is above)")
            results = [out.get(timeout=120) for _ in procs]
            cpu = _cpu_s(collector.pid) - cpu0
            for proc in procs:
                proc.join(60)
            sent = {(f"dev{d}", seq): t for _, s in results for d, seq, t in s}

            def all_stored() -> bool:
                return int(db.execute("SELECT count(*) FROM windows").fetchone()[0]) >= len(sent)  # type: ignore[index]

            _poll(all_stored, 60, 0.5, stop)  # let the collector finish what is in flight, bounded
            if stop.is_set():
                return STOPPED
            rows = db.execute("SELECT device, seq, extract(epoch FROM stored_at) FROM windows").fetchall()
            lat = np.array([float(ts) - sent[(d, q)] for d, q, ts in rows if (d, q) in sent])
            size = db.execute(
                "SELECT pg_total_relation_size('windows') / greatest(count(*), 1) FROM windows"
            ).fetchone()
            # Devices with health, and what the hourly roll-ups hold of attention (5 viewers a window)
            # and of people (14 a window).
            devices_rows = db.execute(
                "SELECT (SELECT count(*) FROM devices WHERE health IS NOT NULL), sum(viewers), sum(windows_attention),"
                " sum(people), sum(windows_people) FROM hourly"
            ).fetchone()
            dup = db.execute("SELECT count(*) - count(DISTINCT (device, stream, seq)) FROM windows").fetchone()[0]  # type: ignore[index]
        stored = len(rows)
        elapsed = duration
        last_stored = max(float(ts) for _, _, ts in rows) - t0 if rows else duration
        log.info("")
        log.info(
            "published %d windows in %.0f s (%.1f/s); stored %d in %.0f s (%.1f/s), duplicates %d, missing %d",
            len(sent),
            elapsed,
            len(sent) / elapsed,
            stored,
            last_stored,
            stored / max(last_stored, 1e-9),
            dup,
            len(sent) - len(lat),
        )
        log.info(
            "end-to-end latency (publish -> committed row): p50 %.3f s, p99 %.3f s, max %.3f s",
            *np.percentile(lat, [50, 99]),
            lat.max(),
        )
        third = max(1, len(rss) // 3)
        log.info("collector CPU: %.0f s in %.0f s (%.0f%% of one core)", cpu, elapsed, 100.0 * cpu / elapsed)
        log.info(
            "table windows: %d bytes per window with its indexes; devices with health: %s; hourly: %s viewers of %s"
            " windows with attention, %s people of %s windows that counted people",
            size[0] if size else 0,
            *(devices_rows or (0, 0, 0, 0, 0)),
        )
        log.info(
            "collector RSS MB: first third %.1f, middle %.1f, last third %.1f (min %.1f, max %.1f)",
            float(np.mean(rss[:third])),
            float(np.mean(rss[third:-third] or rss)),
            float(np.mean(rss[-third:])),
            min(rss),
            max(rss),
        )
        return 0
    finally:
        for proc in procs:
            if proc.is_alive():  # the run ended early
                proc.terminate()
                proc.join(10)
        if collector is not None:
            collector.terminate()
            collector.wait(60)
        stop_broker(broker)
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
