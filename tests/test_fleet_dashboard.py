"""``edge dashboard``: the API against a real PostgreSQL database, and the page in real chromium.

The database holds three days of 5-minute windows from three devices on two sites, built as the
devices build them (``edge.aggregator.suppressed_cells``, payloads that follow window.schema.json):

* ``lobby-1`` never has a count of 1..4, so its day totals are exact sums of what was inserted;
* ``lobby-2`` has small counts, published as null (suppressed on the device);
* ``shop-1`` is the only device of its site and has one hour in which every window was suppressed.

``lobby-1`` and ``shop-1`` measure attention and count people (schema 4, viewers split by the
device's own rule, ``edge.viewers.attention_cells``, people by ``edge.people_cells``; ``lobby-1``
has a counting line and a zone); ``lobby-2`` is an older device (schema 2, neither).

The page test loads the page in Debian's chromium through chromedriver, waits for the page to say
it has drawn everything, and looks at the pixels of every chart and at the browser's console.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import logging
import math
import os
import random
import shutil
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from edge_convert.upstream import NpmSource, SourceError, fetch
from fleet_parts import people_doc, window_payload
from payload_schema import check as check_schema
from pg_database import connect, server_params
from psycopg.types.json import Jsonb

from edge.aggregator import AggregationConfig, breakdown_cells, suppressed_cells
from edge.attributes import AttributesConfig
from edge.fleet.config import DashboardAuthConfig, FleetConfig, parse_fleet_config
from edge.fleet.dashboard import CSP, make_server, serve
from edge.fleet.messages import WindowRow, parse_window
from edge.fleet.schema import migrate
from edge.fleet.store import WindowStore
from edge.people_cells import PeopleTally, people_cells
from edge.people_config import LineConfig, PeopleConfig
from edge.viewers import attention_cells
from edge.window import People

REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO / "edge" / "fleet" / "static" / "vendor"
CHART_JS = NpmSource(
    name="chart.js",
    version="4.6.1",
    integrity="sha512-hJyniucsFmq//EvXYvJ6c6mahPoI3kaxdjVH8awTaJ/fDNWeSqqqArixMJWkWNN6fcYvPU3HneSANFNYtRi61g==",
    license="MIT",
    upstream="https://github.com/chartjs/Chart.js",
)
CHART_JS_SHA256 = "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

K = 5  # the devices' and the fleet's min_cell
WINDOW_S = 300
DAYS_OF_DATA = 3
AGG = AggregationConfig(window_s=WINDOW_S, min_cell=K)
CELLS = breakdown_cells(AGG, AttributesConfig())
# Shares of ended visitors per cell (the last cell of each is "unknown").
WEIGHTS = {
    "gender": [0.47, 0.43, 0.10],
    "age": [0.04, 0.16, 0.24, 0.2, 0.15, 0.1, 0.07, 0.04],
    "expression": [0.5, 0.25, 0.04, 0.02, 0.01, 0.01, 0.07, 0.1],
}
DEVICES = {"lobby-1": "lobby", "lobby-2": "lobby", "shop-1": "shop"}
ATTENTION = {"lobby-1", "shop-1"}  # devices that send schema 4 with attention and people
LINE = {"lobby-1"}  # devices with a counting line (and a zone)


# --- the vendored chart library -----------------------------------------------------------------


def test_vendored_chart_js_is_the_pinned_file() -> None:
    data = (VENDOR / "chart.umd.min.js").read_bytes()
    assert sha256(data).hexdigest() == CHART_JS_SHA256
    assert data.startswith(b"/*!\n * Chart.js v4.6.1\n")
    readme = (VENDOR / "README.md").read_text()
    assert CHART_JS_SHA256 in readme and CHART_JS.integrity in readme and CHART_JS.version in readme
    assert "MIT License" in (VENDOR / "chart.js-LICENSE.md").read_text()


def test_vendored_chart_js_matches_the_npm_tarball() -> None:
    cache = REPO / ".cache" / "npm"
    if not (cache / CHART_JS.tarball_name).exists() and shutil.which("npm") is None:
        pytest.skip(f"{CHART_JS.spec} is not in {cache} and npm is not installed to fetch it")
    try:
        package = fetch(CHART_JS, cache)
    except SourceError as exc:
        if (cache / CHART_JS.tarball_name).exists():
            raise  # fetched, but not the pinned tarball: a failure, never a skip
        pytest.skip(f"cannot fetch {CHART_JS.spec}: {exc}")
    assert (package / "dist" / "chart.umd.min.js").read_bytes() == (VENDOR / "chart.umd.min.js").read_bytes()
    assert (package / "LICENSE.md").read_bytes() == (VENDOR / "chart.js-LICENSE.md").read_bytes()


# --- a database with three days of windows -------------------------------------------------------


@dataclasses.dataclass
class Fleet:
    """What was inserted, for the expected values."""

    dbname: str
    now: datetime
    suppressed_hour: datetime  # shop-1's hour of suppressed-only windows
    visitors: dict[tuple[str, datetime], int | None]  # (device, window start) -> published visitors
    dwell: dict[tuple[str, datetime], tuple[int | None, float | None]]
    # (device, window start) -> published viewers and attention_s.sum (the windows that measured it)
    viewers: dict[tuple[str, datetime], tuple[int | None, float | None]]
    # (device, window start) -> published people (the windows that counted them)
    people: dict[tuple[str, datetime], People]


def _breakdowns(
    rng: random.Random, times: list[float], attention: bool
) -> tuple[dict[str, Any], list[str], tuple[int | None, float | None]]:
    """Each ended visitor's cells, then the device's suppression (primary and complementary); with
    ``attention`` about 40 % of them look (for part of their dwell) and the payload's attention keys
    are made as the aggregator makes them."""
    out: dict[str, Any] = {}
    paths: list[str] = []
    people: dict[str, list[str]] = {}
    every: dict[str, dict[str, int]] = {}
    hidden: dict[str, set[str]] = {}
    for name, labels in CELLS.items():
        people[name] = rng.choices(labels, weights=WEIGHTS[name], k=len(times))
        counts = Counter(people[name])
        every[name] = {label: counts.get(label, 0) for label in labels}
        hidden[name] = suppressed_cells(every[name], K)
        out[name] = {c: (None if c in hidden[name] else v) for c, v in every[name].items()}
        paths += [f"{name}.{c}" for c in labels if c in hidden[name]]
    if not attention:
        return out, paths, (None, None)
    lookers = [i for i in range(len(times)) if rng.random() < 0.4]
    looked = [round(rng.uniform(1.0, times[i]), 1) for i in lookers]
    split = ("gender", "age")
    counts_of = {name: Counter(people[name][i] for i in lookers) for name in split}
    a, more = attention_cells(looked, len(times), counts_of, {n: every[n] for n in split}, hidden, K)
    out.update(
        viewers=a.viewers,
        viewer_rate=a.rate,
        attention_s={"sum": a.seconds_sum, "median": a.seconds_median},
        viewers_by={name: dict(cells) for name, cells in a.by.items()},
    )
    return out, paths + more, (a.viewers, a.seconds_sum)


def _people(rng: random.Random, device: str, times: list[float], level: float) -> tuple[People, list[str]]:
    """The window's people as the device publishes them: its ended visitors (with a face) and about as
    many people again whose face was never seen, crossings and a zone where it has a line."""
    faceless = max(0, round(rng.gauss(len(times) * level, 2))) if level else 0
    dwell = times + [rng.uniform(1.0, 40.0) for _ in range(faceless)]
    ways = (rng.randint(0, 2 + round(12 * level)), rng.randint(0, 2 + round(8 * level)))
    # A zone in which half of the window's people stood at a time, on average.
    tally = PeopleTally(dwell, len(times), *ways, frames=150, zone_sums=[75 * len(dwell)], zone_peaks=[len(dwell)])
    line = LineConfig(start=(0.0, 0.5), end=(1.0, 0.5)) if device in LINE else None
    zones = (("aisle", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0))),) if device in LINE else ()
    return people_cells(tally, PeopleConfig(line=line, zones=zones), K)


def _level(start: datetime) -> float:
    """A plausible day shape: quiet at night, busy in the afternoon (UTC)."""
    hour = start.hour + start.minute / 60
    return max(0.0, math.sin((hour - 6) / 16 * math.pi)) if 6 <= hour <= 22 else 0.0


def _visitors(rng: random.Random, device: str, start: datetime, suppressed_hour: datetime) -> int:
    level = _level(start)
    if device == "lobby-1":
        v = round(rng.gauss(4 + 22 * level, 3))
        return 0 if v <= 0 else max(v, K)  # never 1..k-1: every window published
    if device == "lobby-2":
        return max(0, round(rng.gauss(1 + 8 * level, 2)))  # often 1..4
    if start.replace(minute=0) == suppressed_hour:
        return rng.randint(1, K - 1)
    return rng.randint(K, 20)


def _insert(dbname: str) -> Fleet:
    rng = random.Random(20240601)
    now = datetime.now(timezone.utc)
    end = datetime.fromtimestamp(int(now.timestamp()) // WINDOW_S * WINDOW_S, timezone.utc)
    first = end - timedelta(days=DAYS_OF_DATA)
    suppressed_hour = end.replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    visitors: dict[tuple[str, datetime], int | None] = {}
    dwell: dict[tuple[str, datetime], tuple[int | None, float | None]] = {}
    viewers: dict[tuple[str, datetime], tuple[int | None, float | None]] = {}
    people: dict[tuple[str, datetime], People] = {}
    rows: list[WindowRow] = []
    for device, site in DEVICES.items():
        stream = str(uuid.uuid4())
        today: dict[date, int] = defaultdict(int)
        start, seq = first, 1
        while start < end:
            true_v = _visitors(rng, device, start, suppressed_hour)
            published_v = None if 1 <= true_v < K else true_v
            ended = true_v  # about as many tracks end as start in a 5-minute window
            times = sorted(rng.uniform(2, 90) for _ in range(ended))
            dwell_n = None if 1 <= ended < K else ended
            mean = round(sum(times) / ended, 2) if dwell_n else None
            cells, paths, attention = _breakdowns(rng, times, device in ATTENTION)
            peak = min(true_v, rng.randint(1, 6)) if true_v else 0
            peak_published = None if 1 <= peak < K else peak
            today[start.date()] += published_v or 0
            suppressed = (["visitors"] if published_v is None else []) + (
                ["faces.peak", "faces.mean"] if peak_published is None else []
            )
            if dwell_n is None and ended:
                suppressed += ["dwell_s.n", "dwell_s.mean", "dwell_s.p50", "dwell_s.p90"]
            counted: dict[str, Any] = {}
            if device in ATTENTION:  # in the shop's suppressed hour only its few visitors: 1..4 people
                quiet = device == "shop-1" and start.replace(minute=0) == suppressed_hour
                people[(device, start)], more = _people(rng, device, times, 0.0 if quiet else _level(start))
                counted, suppressed = people_doc(people[(device, start)]), more + suppressed
            payload = {
                "schema": 4 if device in ATTENTION else 2,
                "device": device,
                "site": site,
                "stream": stream,
                "seq": seq,
                "window": {
                    "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "end": (start + timedelta(seconds=WINDOW_S)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "partial": False,
                },
                "observed_s": float(WINDOW_S),
                "visitors": published_v,
                "today": {"date": start.date().isoformat(), "visitors": today[start.date()]},
                "faces": {"peak": peak_published, "mean": None if peak_published is None else round(peak / 2, 2)},
                "dwell_s": {
                    "n": dwell_n,
                    "mean": mean,
                    "p50": round(times[len(times) // 2], 2) if dwell_n else None,
                    "p90": round(times[int(len(times) * 0.9)], 2) if dwell_n else None,
                },
                **counted,
                **cells,
                "suppressed": suppressed + paths,
            }
            if seq % 97 == 1:
                check_schema("window", payload)
            visitors[(device, start)] = published_v
            dwell[(device, start)] = (dwell_n, mean)
            if device in ATTENTION:
                viewers[(device, start)] = attention
            row = parse_window(f"edge/{device}/counts", json.dumps(payload).encode(), device)
            assert isinstance(row, WindowRow), row
            rows.append(row)
            start += timedelta(seconds=WINDOW_S)
            seq += 1
    health = {
        "schema": 1,
        "device": "lobby-1",
        "ts": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fps": 9.8,
        "processed_frames": 1_000_000,
        "detector_ms": 41.0,
        "tracker_ms": 0.4,
        "attributes_ms": 12.0,
        "dropped_frames": 12,
        "uptime_s": 259_200.0,
        "windows": 864,
        "held_windows": 0,
        "version": "0.1.0",
        "cpu_temp_c": 55.2,
        "throttled": None,
        "spool": {"depth": 3, "oldest_age_s": 40.0, "evicted": 0, "max_windows": 100_000},
    }
    check_schema("health", health)
    with connect(dbname) as conn:
        migrate(conn)
        WindowStore(conn, "edge-collector").write(rows, [], [])  # the collector's own store
        silent, gone = now - timedelta(minutes=20), now - timedelta(hours=2)
        devices = [
            # Online and reporting; an MQTT device, so its health has a spool.
            ("lobby-1", "lobby", "online", now, Jsonb(health), now, end, now),
            # Says online (retained) but silent for 20 minutes: shown offline.
            ("lobby-2", "lobby", "online", now - timedelta(hours=3), None, None, silent, silent),
            # Its Last Will said offline two hours ago; a health without a spool (jsonl sink).
            ("shop-1", "shop", "offline", gone, Jsonb({**health, "device": "shop-1", "spool": None}), gone, gone, gone),
        ]
        conn.cursor().executemany(
            "INSERT INTO devices (device, site, status, status_at, health, health_at, last_window_end, last_seen)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            # The store has already recorded each device's last window; this sets the state to show.
            " ON CONFLICT (device) DO UPDATE SET site = excluded.site, status = excluded.status,"
            " status_at = excluded.status_at, health = excluded.health, health_at = excluded.health_at,"
            " last_window_end = excluded.last_window_end, last_seen = excluded.last_seen",
            devices,
        )
    return Fleet(dbname, now, suppressed_hour, visitors, dwell, viewers, people)


@pytest.fixture(scope="module")
def fleet(pg_databases: Callable[[], str]) -> Fleet:
    return _insert(pg_databases())


def _config(dbname: str, **dashboard: Any) -> FleetConfig:
    config = parse_fleet_config({"database": {**server_params(), "dbname": dbname, "connect_timeout_s": 5}})
    return dataclasses.replace(config, dashboard=dataclasses.replace(config.dashboard, port=0, **dashboard))


@pytest.fixture(scope="module")
def base_url(fleet: Fleet) -> Iterator[str]:
    url, stop = _start(_config(fleet.dbname))
    yield url
    stop()


def _start(config: FleetConfig) -> tuple[str, Callable[[], None]]:
    server = make_server(config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(5)
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}/", stop


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _raw(base_url: str, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """A request with the path exactly as given (urllib may tidy it)."""
    host, port = base_url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


# --- the API ---------------------------------------------------------------------------------------


def test_summary_matches_the_inserted_windows(fleet: Fleet, base_url: str) -> None:
    status, headers, body = _get(base_url + "api/summary")
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    data = json.loads(body)
    assert data["min_cell"] == K and data["days"] == 14
    assert len(data["hourly"]["hours"]) == 48 and len(data["daily"]["days"]) == 14

    # A day of lobby-1 (never suppressed) is the exact sum of what was inserted.
    daily = {s["name"]: s for s in data["daily"]["series"]}
    assert set(daily) == set(DEVICES) and daily["lobby-1"]["site"] == "lobby"
    sums: dict[str, int] = defaultdict(int)
    for (device, start), v in fleet.visitors.items():
        if device == "lobby-1":
            sums[start.date().isoformat()] += v or 0
    assert len(sums) >= DAYS_OF_DATA
    for i, day in enumerate(data["daily"]["days"]):
        assert daily["lobby-1"]["values"][i] == sums.get(day), day
        assert not daily["lobby-1"]["hidden"][i]

    # shop-1's suppressed-only hour is a gap marked withheld; the hour before it has a count.
    hourly = {s["name"]: s for s in data["hourly"]["series"]}
    hours = [datetime.fromisoformat(h.replace("Z", "+00:00")) for h in data["hourly"]["hours"]]
    i = hours.index(fleet.suppressed_hour)
    assert hourly["shop"]["values"][i] is None and hourly["shop"]["hidden"][i]
    before = sum(
        v or 0 for (d, s), v in fleet.visitors.items() if d == "shop-1" and s.replace(minute=0) == hours[i - 1]
    )
    assert hourly["shop"]["values"][i - 1] == before and before >= K
    # A site hour sums both lobby devices' published counts, then applies the rule again.
    # (An hour with no window at all, e.g. one begun since the insert, is a gap too.)
    lobby: dict[datetime, int] = defaultdict(int)
    for (d, s), v in fleet.visitors.items():
        if DEVICES[d] == "lobby":
            lobby[s.replace(minute=0)] += v or 0
    assert hourly["lobby"]["values"] == [None if h not in lobby or 1 <= lobby[h] < K else lobby[h] for h in hours]
    # Every count returned is null, 0 or >= k.
    for part in ("hourly", "daily"):
        for s in data[part]["series"]:
            assert all(v is None or v == 0 or v >= K for v in s["values"]), s

    # Mean dwell of a day and site: the mean of the published means weighted by their n.
    dwell = {s["name"]: s for s in data["dwell"]["series"]}
    day = data["dwell"]["days"].index(fleet.suppressed_hour.date().isoformat())
    pairs = [
        nm for (d, s), nm in fleet.dwell.items() if DEVICES[d] == "shop" and s.date() == fleet.suppressed_hour.date()
    ]
    expected = sum(n * m for n, m in pairs if m is not None) / sum(n for n, m in pairs if m is not None)
    assert dwell["shop"]["values"][day] == pytest.approx(expected, abs=0.051)

    _check_attention(fleet, data, hours)
    _check_people(fleet, data, hours)

    # Gender and age mix: n is the site's published ended visitors; cells null or >= k, never above n.
    mix = {(m["site"], m["attribute"]): m for m in data["mix"]}
    assert set(mix) == {(s, a) for s in ("lobby", "shop") for a in ("gender", "age", "expression")}
    shop_n = sum(n or 0 for (d, _s), (n, _m) in fleet.dwell.items() if d == "shop-1")
    assert mix[("shop", "gender")]["n"] == shop_n
    assert list(mix[("shop", "gender")]["cells"]) == ["female", "male", "unknown"]
    assert list(mix[("lobby", "age")]["cells"]) == list(AGG.age_labels) + ["unknown"]
    for m in data["mix"]:
        published = [v for v in m["cells"].values() if v is not None]
        assert all(v == 0 or v >= K for v in published) and sum(published) <= m["n"]
        assert m["n"] - sum(published) == 0 or m["n"] - sum(published) >= K

    devices = {d["device"]: d for d in data["devices"]}
    assert devices["lobby-1"]["online"] is True and devices["lobby-1"]["spool_depth"] == 3
    assert devices["lobby-1"]["fps"] == 9.8 and devices["lobby-1"]["version"] == "0.1.0"
    assert devices["lobby-2"]["online"] is False and devices["lobby-2"]["status"] == "online"
    assert devices["shop-1"]["online"] is False and devices["shop-1"]["spool_depth"] is None
    assert devices["lobby-1"]["last_seen"].endswith("Z")


def _check_attention(fleet: Fleet, data: dict[str, Any], hours: list[datetime]) -> None:
    """Viewers and attention minutes per site hour: the sums of what the windows that measured
    attention published, shown only where the viewers, the non-viewers of those windows and the
    hour's dwell_n minus its viewers are each 0 or >= k (else withheld); an hour in which no window
    measured attention (lobby-2 alone) is a gap, not withheld."""
    att = data["attention"]
    assert att["hours"] == data["hourly"]["hours"]
    viewers = {s["name"]: s for s in att["viewers"]}
    minutes = {s["name"]: s for s in att["minutes"]}
    assert set(viewers) == set(minutes) == {"lobby", "shop"}
    # (site, hour) -> [viewers, their windows' dwell_n, every dwell_n, attention seconds, measured]
    sums: dict[tuple[str, datetime], list[Any]] = defaultdict(lambda: [None, 0, 0, 0.0, 0])
    for (device, start), (n, _mean) in fleet.dwell.items():
        acc = sums[(DEVICES[device], start.replace(minute=0))]
        acc[2] += n or 0
        if (device, start) in fleet.viewers:
            acc[4] += 1
            v, seconds = fleet.viewers[(device, start)]
            if v is not None:
                assert n is not None and seconds is not None
                acc[0], acc[1], acc[3] = (acc[0] or 0) + v, acc[1] + n, acc[3] + seconds
    safe = lambda x: x == 0 or x >= K  # noqa: E731
    shown = withheld = 0
    for site in ("lobby", "shop"):
        for i, hour in enumerate(hours):
            v, vn, n, seconds, measured = sums.get((site, hour), [None, 0, 0, 0.0, 0])
            ok = v is not None and safe(v) and safe(vn - v) and safe(n - v)
            assert viewers[site]["values"][i] == (v if ok else None), (site, hour)
            assert viewers[site]["hidden"][i] == bool(measured and not ok), (site, hour)
            if ok:
                assert minutes[site]["values"][i] == pytest.approx(seconds / 60, abs=0.051), (site, hour)
            else:
                assert minutes[site]["values"][i] is None
            shown += ok and v > 0
            withheld += bool(measured and not ok)
    i = hours.index(fleet.suppressed_hour)  # shop-1 hid every count of that hour: viewers too
    assert viewers["shop"]["values"][i] is None and viewers["shop"]["hidden"][i]
    assert shown > 20 and withheld >= 1, (shown, withheld)


def _check_people(fleet: Fleet, data: dict[str, Any], hours: list[datetime]) -> None:
    """People, those with a face and crossings in and out per site hour: the sums of what the windows
    that counted people published (crossings: that have a line), shown where the device's rules hold
    after summing (people and each way 0 or >= k; with a face only where it, the people without one
    among the windows that published it and the hour's people minus it are), else withheld; an hour
    in which no window counted people (or had a line) is a gap, not withheld."""
    p = data["people"]
    assert p["hours"] == data["hourly"]["hours"]
    series = {key: {s["name"]: s for s in p[key]} for key in ("people", "with_face", "crossings_in", "crossings_out")}
    assert set(series["people"]) == set(series["with_face"]) == {"lobby", "shop"}
    assert set(series["crossings_in"]) == set(series["crossings_out"]) == {"lobby"}  # only lobby-1 has a line
    # (site, hour) -> [windows, people, with a face, their windows' people, lines, in, out]
    sums: dict[tuple[str, datetime], list[Any]] = defaultdict(lambda: [0, None, None, 0, 0, None, None])
    add = lambda a, b: b if a is None else a if b is None else a + b  # noqa: E731
    for (device, start), c in fleet.people.items():
        acc = sums[(DEVICES[device], start.replace(minute=0))]
        acc[0], acc[1] = acc[0] + 1, add(acc[1], c.n)
        if c.with_face is not None:
            assert c.n is not None
            acc[2], acc[3] = add(acc[2], c.with_face), acc[3] + c.n
        if c.crossings is not None:
            acc[4], acc[5], acc[6] = acc[4] + 1, add(acc[5], c.crossings[0]), add(acc[6], c.crossings[1])
    safe = lambda x: x is not None and (x == 0 or x >= K)  # noqa: E731
    shown = Counter[str]()
    withheld = Counter[str]()
    for (site, hour), (windows, n, face, face_n, lines, ins, outs) in sums.items():
        if hour not in hours:
            continue
        i = hours.index(hour)
        face_ok = safe(face) and safe(face_n - face) and safe((n or 0) - face)
        expected = {"people": (n, safe(n), windows), "with_face": (face, face_ok, windows)}
        if lines:
            expected |= {"crossings_in": (ins, safe(ins), lines), "crossings_out": (outs, safe(outs), lines)}
        for key, (value, ok, counted) in expected.items():
            s = series[key][site]
            assert s["values"][i] == (value if ok else None), (key, site, hour)
            assert s["hidden"][i] == bool(counted and not ok), (key, site, hour)
            shown[key] += ok and bool(value)
            withheld[key] += not ok
    for key, s in series.items():  # the hours without windows that counted are gaps, not withheld
        for name, one in s.items():
            for i, hour in enumerate(hours):
                if (name, hour) not in sums or (key.startswith("crossings") and not sums[(name, hour)][4]):
                    assert one["values"][i] is None and not one["hidden"][i], (key, name, hour)
    i = hours.index(fleet.suppressed_hour)  # shop-1 hid every count of that hour: its people too
    assert series["people"]["shop"]["values"][i] is None and series["people"]["shop"]["hidden"][i]
    assert min(shown.values()) > 20 and withheld["people"] >= 1, (shown, withheld)


def test_days_parameter(fleet: Fleet, base_url: str) -> None:
    status, _, body = _get(base_url + "api/summary?days=2")
    assert status == 200
    data = json.loads(body)
    assert data["days"] == 2 and len(data["daily"]["days"]) == 2
    assert data["daily"]["days"][-1] == data["generated_at"][:10]  # today (UTC) is the last day
    for bad in ("0", "367", "x", "-1", "%C2%B2", "1e2"):
        status, _, body = _get(base_url + f"api/summary?days={bad}")
        assert status == 400 and "days" in json.loads(body)["error"]


def test_http_surface(base_url: str) -> None:
    status, headers, body = _get(base_url)
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == CSP and "default-src 'self'" in CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    page = body.decode()
    assert '<link rel="icon" href="data:,">' in page
    assert "http://" not in page and "https://" not in page and "<script>" not in page and "style=" not in page
    for path, ctype in (
        ("static/dashboard.js", "text/javascript; charset=utf-8"),
        ("static/dashboard.css", "text/css; charset=utf-8"),
        ("static/vendor/chart.umd.min.js", "text/javascript; charset=utf-8"),
    ):
        status, headers, body = _get(base_url + path)
        assert status == 200 and headers["Content-Type"] == ctype and body, path
    js = (REPO / "edge" / "fleet" / "static" / "dashboard.js").read_text()
    assert "http://" not in js and "https://" not in js

    status, headers, body = _get(base_url, method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    status, headers, body = _get(base_url + "healthz")
    assert (status, body) == (200, b"ok\n")
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = _raw(base_url, method, "/api/summary")
        assert status == 405 and headers["Allow"] == "GET, HEAD", method
    for path in (
        "/static/../dashboard.py",
        "/static/%2e%2e/dashboard.py",
        "/static/vendor/../../dashboard.py",
        "/static/..%2fdashboard.py",
        "/static/vendor/chart.umd.min.js.map",
        "/static/__init__.py",
        "/static//etc/passwd",
        "/nothing",
    ):
        status, _, body = _raw(base_url, "GET", path)
        assert status == 404, path
        assert b"import" not in body


def test_database_errors_are_503(fleet: Fleet) -> None:
    url, stop = _start(_config(fleet.dbname + "_missing"))
    try:
        for path in ("api/summary", "healthz"):
            status, headers, body = _get(url + path)
            assert status == 503 and headers["Content-Type"] == "application/json", path
            assert "does not exist" in json.loads(body)["error"]
        assert _get(url)[0] == 200  # the page itself still loads and shows the error
    finally:
        stop()


def test_serve_until_stopped(fleet: Fleet) -> None:
    """``serve`` (what ``edge dashboard`` runs) answers, and returns and closes its port once stopped."""
    started = threading.Event()
    urls: list[str] = []

    class Started(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("dashboard on "):
                urls.append(record.getMessage().split()[2])
                started.set()

    handler = Started()
    logger = logging.getLogger("edge.fleet.dashboard")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(_config(fleet.dbname), stop), daemon=True)
    try:
        thread.start()
        assert started.wait(10), "serve() did not log its address"
        status, _, body = _get(urls[0] + "healthz")
        assert (status, body) == (200, b"ok\n")
    finally:
        stop.set()
        thread.join(10)
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert not thread.is_alive()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(urls[0] + "healthz", timeout=5)


def test_basic_auth(fleet: Fleet, tmp_path: Path) -> None:
    secret = tmp_path / "dashboard.password"
    secret.write_text("s3cret pass\n")
    auth = DashboardAuthConfig(username="viewer", password_file=secret)
    url, stop = _start(_config(fleet.dbname, auth=auth))
    try:
        for path in ("", "api/summary", "static/dashboard.js", "healthz"):
            status, headers, _ = _get(url + path)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm="), path
        for user, password in (("viewer", "wrong"), ("other", "s3cret pass"), ("viewer", "")):
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            assert _get(url, {"Authorization": f"Basic {token}"})[0] == 401
        assert _get(url, {"Authorization": "Basic !!!"})[0] == 401
        token = base64.b64encode(b"viewer:s3cret pass").decode()
        for path in ("", "api/summary"):
            assert _get(url + path, {"Authorization": f"Basic {token}"})[0] == 200, path
    finally:
        stop()


# --- the page in chromium --------------------------------------------------------------------------

CANVASES = (
    "chart-hourly",
    "chart-attention",
    "chart-people",
    "chart-daily",
    "chart-dwell",
    "chart-gender",
    "chart-age",
    "chart-spool",
)
# A colour each chart must contain: the first site's or device's series, the female share, ...
SERIES_COLOUR = {
    "chart-hourly": "#2563eb",
    "chart-attention": "#2563eb",
    "chart-people": "#2563eb",
    "chart-daily": "#2563eb",
    "chart-dwell": "#2563eb",
    "chart-gender": "#db2777",
    "chart-age": "#3b82f6",
    "chart-spool": "#0891b2",
}
_PIXELS_JS = """
const out = {};
for (const [id, hex] of Object.entries(arguments[0])) {
  const c = document.getElementById(id);
  if (!c) { out[id] = null; continue; }
  const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const colours = new Set();
  let opaque = 0, series = 0;
  for (let i = 0; i < px.length; i += 4) {
    if (px[i + 3] === 0) continue;
    opaque++;
    colours.add((px[i] << 16) | (px[i + 1] << 8) | px[i + 2]);
    if (px[i + 3] === 255 && px[i] === want[0] && px[i + 1] === want[1] && px[i + 2] === want[2]) series++;
  }
  out[id] = {width: c.width, height: c.height, opaque, colours: colours.size, series};
}
return out;
"""


@pytest.fixture()
def browser() -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"the page test needs Debian's chromium and chromium-driver: {', '.join(missing)} missing")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_an_hour_alone_is_drawn(pg_databases: Callable[[], str], browser: Any) -> None:
    """A device that sent windows in one hour only, three hours ago: the hourly chart's line has no
    segment to draw, so the hour must show as a dot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    dbname = pg_databases()
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    doc = window_payload("solo-1", str(uuid.uuid4()), 1, minute=0, visitors=9)
    doc["window"] = {
        "start": (hour + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": (hour + timedelta(minutes=11)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "partial": False,
    }
    row = parse_window("edge/solo-1/counts", json.dumps(doc).encode(), "solo-1")
    assert isinstance(row, WindowRow), row
    with connect(dbname) as conn:
        migrate(conn)
        WindowStore(conn, "test").write([row], [], [])
    url, stop = _start(_config(dbname))
    try:
        browser.get(url)
        WebDriverWait(browser, 20).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") != "0"
        )
        points = browser.execute_script(_LONE_POINTS_JS, "chart-hourly")
    finally:
        stop()
    assert points["labels"] > 20, points  # the many-hours chart, where points are not drawn
    assert points["lone"] == [3], points  # the one hour with a value, drawn as a dot


_LONE_POINTS_JS = """
const chart = Chart.getChart(document.getElementById(arguments[0]));
const lone = [];
chart.data.datasets.forEach((ds, d) => {
  const meta = chart.getDatasetMeta(d);
  if (meta.type !== 'line' || !Array.isArray(ds.data)) return;
  ds.data.forEach((v, i) => {
    if (v != null && typeof v !== 'object' && ds.data[i - 1] == null && ds.data[i + 1] == null) {
      lone.push(meta.data[i].options.radius);
    }
  });
});
return {labels: chart.data.labels.length, lone};
"""


# The people chart's lines: the API's series and the word the page's dataset labels end with.
PEOPLE_LINES = (
    ("people", "people"),
    ("with_face", "with a face"),
    ("crossings_in", "crossings in"),
    ("crossings_out", "crossings out"),
)

# Per dataset of a chart: its data and how many of its points lie, drawn, inside the plot area.
_DRAWN_JS = """
const chart = Chart.getChart(document.getElementById(arguments[0]));
const area = chart.chartArea, out = {};
chart.data.datasets.forEach((ds, d) => {
  const points = chart.getDatasetMeta(d).data;
  const drawn = points.filter((p, i) => ds.data[i] != null && !p.skip && Number.isFinite(p.x) && Number.isFinite(p.y)
    && p.x >= area.left && p.x <= area.right && p.y >= area.top - 1 && p.y <= area.bottom + 1).length;
  out[ds.label] = {data: ds.data, drawn};
});
return out;
"""


def test_page_draws_every_chart(base_url: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(base_url)
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") != "0")
    body = browser.find_element(By.TAG_NAME, "body")
    assert body.get_attribute("data-ready") == "1", browser.find_element(By.ID, "error").text

    shot = tmp_path / "dashboard.png"
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    if height > 1800:  # the whole page in the screenshot (the charts keep their size: fixed heights)
        browser.set_window_size(1400, height + 40)
    assert browser.save_screenshot(str(shot))
    if os.environ.get("EDGE_DASHBOARD_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["EDGE_DASHBOARD_SCREENSHOT"])

    pixels = browser.execute_script(_PIXELS_JS, SERIES_COLOUR)
    for canvas in CANVASES:
        p = pixels[canvas]
        assert p is not None, f"no canvas {canvas}"
        area = p["width"] * p["height"]
        assert area > 100_000, (canvas, p)
        assert p["opaque"] > 0.01 * area and p["colours"] > 20, (canvas, p)
        assert p["series"] > 30, f"{canvas}: its data colour {SERIES_COLOUR[canvas]} is not drawn: {p}"

    # The attention chart draws both series of each site from the stored windows, as the API gives them.
    _, _, body = _get(base_url + "api/summary")
    api = json.loads(body)["attention"]
    drawn = browser.execute_script(_DRAWN_JS, "chart-attention")
    for key, what in (("viewers", "viewers"), ("minutes", "attention (min)")):
        for s in api[key]:
            line = drawn[f"{s['name']} {what}"]
            assert line["data"] == s["values"], (s["name"], what)
            assert line["drawn"] == sum(v is not None for v in s["values"]) > 10, (s["name"], what, line)
    assert any(label.endswith("viewers: withheld (1–4)") for label in drawn), list(drawn)

    # So does the people chart: people, with a face and crossings in and out (the lobby's line).
    people = json.loads(body)["people"]
    drawn = browser.execute_script(_DRAWN_JS, "chart-people")
    for key, what in PEOPLE_LINES:
        for s in people[key]:
            line = drawn[f"{s['name']} {what}"]
            assert line["data"] == s["values"], (s["name"], what)
            assert line["drawn"] == sum(v is not None for v in s["values"]) > 10, (s["name"], what, line)
    assert sorted(label for label in drawn if "crossings" in label and "withheld" not in label) == [
        "lobby crossings in",
        "lobby crossings out",
    ]
    assert "shop people: withheld (1–4)" in drawn, list(drawn)

    privacy = browser.find_element(By.ID, "privacy").text
    assert "1 to 4" in privacy and "k = 5" in privacy
    rows = browser.find_elements(By.CSS_SELECTOR, "#devices tbody tr")
    status = {r.get_attribute("data-device"): r.find_element(By.CSS_SELECTOR, ".pill").text for r in rows}
    assert status == {"lobby-1": "online", "lobby-2": "offline", "shop-1": "offline"}
    assert not browser.find_element(By.ID, "error").is_displayed()

    logs = browser.get_log("browser")
    severe = [entry for entry in logs if entry["level"] == "SEVERE"]
    assert not severe, "browser console errors:\n" + "\n".join(e["message"] for e in severe)
