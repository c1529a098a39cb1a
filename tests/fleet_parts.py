"""Shared by the fleet tests: window payloads, collector configs, a collector in a child process
(so a test can SIGKILL it) and devices that publish through the real MQTT sink and spool. Waits on a
database condition use ``polling.wait_until``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from mqtt_broker import HOST
from pg_database import connect, server_params

from edge.fleet.messages import PEOPLE_EXTRAS, PEOPLE_KEYS
from edge.sinks.base import SinkContext
from edge.sinks.mqtt import DeliveryTiming, DiscoveryConfig, MqttSink, MqttSinkConfig
from edge.state_store import StateStore
from edge.window import Dwell, Faces, People, Span, Window

REPO = Path(__file__).resolve().parents[1]


def window_payload(
    device: str,
    stream: str,
    seq: int,
    *,
    site: str = "shop",
    minute: int | None = None,
    visitors: int | None = 7,
    attention: bool = False,
    people: bool = False,
) -> dict[str, Any]:
    """A schema-2 window (edge/schemas/window.schema.json) with breakdowns that obey min_cell 5;
    with ``attention`` a schema-3 one whose 5 viewers of the 10 ended visitors are published; with
    ``people`` a schema-4 one that counted 20 people (``people_keys``)."""
    start = datetime(2026, 12, 1, tzinfo=timezone.utc) + timedelta(minutes=seq if minute is None else minute)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    doc: dict[str, Any] = {
        "schema": 2,
        "device": device,
        "site": site,
        "stream": stream,
        "seq": seq,
        "window": {"start": start.strftime(iso), "end": (start + timedelta(minutes=1)).strftime(iso), "partial": False},
        "observed_s": 60.0,
        "visitors": visitors,
        "today": {"date": start.strftime("%Y-%m-%d"), "visitors": 0},
        "faces": {"peak": 5, "mean": 1.5},
        "dwell_s": {"n": 10, "mean": 12.0, "p50": 10.0, "p90": 25.0},
        "gender": {"female": 5, "male": 5, "unknown": 0},
        "age": {"18-24": 5, "25-34": None, "35-44": None, "unknown": 0},
        "suppressed": ([] if visitors is not None else ["visitors"]) + ["age.25-34", "age.35-44"],
    }
    if attention:
        suppressed = doc.pop("suppressed")
        doc |= {
            "schema": 3,
            "viewers": 5,
            "viewer_rate": 0.5,
            "attention_s": {"sum": 31.5, "median": 5.5},
            "viewers_by": {
                "gender": {"female": 0, "male": 5, "unknown": 0},
                "age": {"18-24": 0, "25-34": None, "35-44": None, "unknown": 0},
            },
            "suppressed": [*suppressed, "viewers_by.age.25-34", "viewers_by.age.35-44"],
        }
    if not people:
        return doc
    order = list(doc)  # the people keys follow dwell_s, as a device publishes them
    cut = order.index("dwell_s") + 1
    paths, keys = people_keys()
    return {
        **{k: doc[k] for k in order[:cut]},
        "schema": 4,
        **keys,
        **{k: doc[k] for k in order[cut:] if k != "suppressed"},
        "suppressed": [*paths, *doc["suppressed"]],
    }


def people_keys() -> tuple[list[str], dict[str, Any]]:
    """A schema-4 window's people keys as a device with min_cell 5, a counting line and two zones
    publishes them (edge.people_cells), and the paths they suppress: 20 people, 10 with a face,
    15 passers-by and 5 stayers, 6 crossings in and 1..4 out (hidden), zone ``door`` with a peak of
    5 and zone ``till`` with one of 1..4 (hidden)."""
    keys = {
        "people": 20,
        "people_with_face": 10,
        "passers_by": 15,
        "stayers": 5,
        "crossings": {"in": 6, "out": None},
        "zones": {"door": {"peak": 5, "mean": 2.5}, "till": {"peak": None, "mean": None}},
    }
    return ["crossings.out", "zones.till.peak", "zones.till.mean"], keys


def people_doc(people: People) -> dict[str, Any]:
    """A window's people keys as the device publishes ``people`` (``Window.to_payload``)."""
    span, faces, dwell = Span("", "", False), Faces(None, None), Dwell(None, None, None, None)
    window = Window("d", "s", span, 0.0, None, faces, dwell, {}, (), people=people)
    return {k: v for k, v in window.to_payload().items() if k in (*PEOPLE_KEYS, *PEOPLE_EXTRAS)}


def health_payload(device: str, *, depth: int = 0) -> dict[str, Any]:
    """A device's health message as the daemon publishes it (edge/schemas/health.schema.json)."""
    return {
        "schema": 1,
        "device": device,
        "ts": "2026-12-01T00:00:30Z",
        "fps": 15.0,
        "processed_frames": 450,
        "detector_ms": 13.1,
        "tracker_ms": 0.2,
        "attributes_ms": 1.5,
        "dropped_frames": 0,
        "uptime_s": 30.0,
        "windows": 1,
        "held_windows": 0,
        "version": "0.1.0",
        "cpu_temp_c": None,
        "throttled": None,
        "spool": {"depth": depth, "oldest_age_s": None, "evicted": 0, "max_windows": 10000},
    }


def fleet_config(port: int, dbname: str, **mqtt: Any) -> dict[str, Any]:
    return {
        "mqtt": {"host": HOST, "port": port, "keepalive": 5, "reconnect_max_s": 1, **mqtt},
        "database": {**server_params(), "dbname": dbname, "sslmode": "disable"},
        "batch": {"max_wait_s": 0.05},
        "health_interval_s": 1,
    }


def stored_keys(dbname: str) -> list[tuple[str, str, int]]:
    with connect(dbname) as conn:
        rows = conn.execute("SELECT device, stream::text, seq FROM windows").fetchall()
    return [(d, s, q) for d, s, q in rows]


def stored_count(dbname: str) -> int:
    with connect(dbname) as conn:
        try:
            row = conn.execute("SELECT count(*) FROM windows").fetchone()
        except Exception:  # the collector has not created the table yet
            return 0
    return int(row[0]) if row else 0


class CollectorProcess:
    """``edge collect`` as a child process (the real command line), killable with SIGKILL."""

    def __init__(self, workdir: Path, config: dict[str, Any], name: str = "collector") -> None:
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "collect", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def collector_process(workdir: Path, config: dict[str, Any], name: str = "collector") -> Iterator[CollectorProcess]:
    proc = CollectorProcess(workdir, config, name)
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.kill()


class Device:
    """A device's real MQTT sink with its on-disk spool; records every window it was handed."""

    def __init__(self, workdir: Path, name: str, port: int) -> None:
        self.name = name
        self.stream = str(uuid.uuid4())
        self.spool = StateStore(workdir / f"{name}.spool.sqlite3", 100_000)
        config = MqttSinkConfig(
            host=HOST, port=port, keepalive=5, topic_prefix=f"edge/{name}/", discovery=DiscoveryConfig(enabled=False)
        )
        timing = DeliveryTiming(reconnect_min_s=0.1, reconnect_max_s=0.5, close_timeout_s=5.0, max_inflight=20)
        self.sink = MqttSink(config, self.spool, SinkContext(name, "test"), timing=timing)
        self.handed: list[tuple[str, str, int]] = []
        self._seq = 0

    def publish(self, n: int) -> None:
        for _ in range(n):
            self._seq += 1
            # In turn a window of schema 2, one measuring attention (schema 3), one that also counted
            # people (schema 4) and one of a device with attention off (schema 4).
            kind = self._seq % 4
            doc = window_payload(self.name, self.stream, self._seq, attention=kind in (1, 2), people=kind >= 2)
            self.sink.publish_window(Window.from_payload(doc))
            self.handed.append((self.name, self.stream, self._seq))

    def close(self) -> None:
        self.sink.close()
        self.spool.close()


def json_payload(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


def rollup_mismatches(dbname: str) -> int:
    """Hours and cells where the roll-ups differ from what the stored windows add up to (0: none);
    a window counted twice (a redelivery) or not at all shows here."""
    with connect(dbname) as conn:
        hours = conn.execute(
            """
            SELECT count(*) FROM (
                SELECT date_trunc('hour', window_start, 'UTC') AS hour, site, device, count(*) AS w,
                       sum(visitors) AS v, sum(dwell_n) AS n, count(*) FILTER (WHERE attention) AS wa,
                       sum(viewers) AS vw, sum(dwell_n) FILTER (WHERE viewers IS NOT NULL) AS vn,
                       sum(attention_sum_s) FILTER (WHERE viewers IS NOT NULL) AS att,
                       count(*) FILTER (WHERE people_counted) AS wp, count(*) FILTER (WHERE people_counted
                       AND people IS NULL) AS wps, sum(people) AS p, sum(people_with_face) AS pf,
                       sum(people) FILTER (WHERE people_with_face IS NOT NULL) AS pfn, sum(passers_by) AS pb,
                       sum(stayers) AS st, count(*) FILTER (WHERE crossing_line) AS wl, sum(crossings_in) AS ci,
                       sum(crossings_out) AS co
                FROM windows GROUP BY 1, 2, 3) a
            FULL JOIN hourly b ON a.hour = b.hour AND a.site = b.site AND a.device = b.device
            WHERE a.w IS DISTINCT FROM b.windows OR a.v IS DISTINCT FROM b.visitors OR a.n IS DISTINCT FROM b.dwell_n
               OR a.wa IS DISTINCT FROM b.windows_attention OR a.vw IS DISTINCT FROM b.viewers
               OR a.vn IS DISTINCT FROM b.viewers_n OR a.att IS DISTINCT FROM b.attention_s
               OR (a.wp, a.wps, a.p, a.pf, a.pfn, a.pb, a.st, a.wl, a.ci, a.co) IS DISTINCT FROM
                  (b.windows_people, b.windows_people_suppressed, b.people, b.people_with_face, b.people_face_n,
                   b.passers_by, b.stayers, b.windows_line, b.crossings_in, b.crossings_out)
            """
        ).fetchone()
        cells = conn.execute(
            """
            SELECT count(*) FROM (
                SELECT date_trunc('hour', w.window_start, 'UTC') AS hour, w.site, w.device, a.attribute,
                       e.key AS cell, sum((e.value #>> '{}')::bigint) AS v
                FROM windows w
                CROSS JOIN (VALUES ('gender'), ('age'), ('expression'), ('ethnicity')) AS a(attribute)
                CROSS JOIN LATERAL jsonb_each(w.payload -> a.attribute) AS e
                WHERE w.dwell_n IS NOT NULL GROUP BY 1, 2, 3, 4, 5) a
            FULL JOIN hourly_cells b ON a.hour = b.hour AND a.site = b.site AND a.device = b.device
                AND a.attribute = b.attribute AND a.cell = b.cell
            WHERE a.v IS DISTINCT FROM b.visitors
            """
        ).fetchone()
    return int(hours[0] if hours else -1) + int(cells[0] if cells else -1)
