"""The collector's schema on a real PostgreSQL: migrations, and the minimum-cell rule after summing
(a property test over random fleets whose devices suppress with the real aggregator's rule)."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fleet_parts import window_payload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg_database import connect

from edge.aggregator import suppressed_cells
from edge.fleet.messages import Rejected, WindowRow, parse_window
from edge.fleet.schema import LATEST, MIGRATIONS, Migration, SchemaError, migrate, set_min_cell
from edge.fleet.store import WindowStore
from edge.sinks.base import dumps
from edge.viewers import attention_cells


def test_migrations_from_an_empty_database_then_a_rerun_changes_nothing(pg_database: str) -> None:
    with connect(pg_database) as conn:
        assert migrate(conn) == [m.version for m in MIGRATIONS]
        assert migrate(conn) == []
        versions = [v for (v,) in conn.execute("SELECT version FROM fleet_schema ORDER BY version")]
        assert versions == [m.version for m in MIGRATIONS]
        views = {v for (v,) in conn.execute("SELECT table_name FROM information_schema.views")}
        assert {"visitors_hourly", "visitors_daily", "visitors_hourly_site", "visitors_daily_site"} <= views


def test_two_collectors_migrating_at_once_apply_each_version_once(pg_database: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def one() -> None:
        try:
            with connect(pg_database) as conn:
                barrier.wait(10)
                results.append(migrate(conn))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(results, key=len) == [[], [m.version for m in MIGRATIONS]]


def test_a_later_migration_is_applied_on_top_and_a_newer_database_is_refused(pg_database: str) -> None:
    with connect(pg_database) as conn:
        migrate(conn, MIGRATIONS[:1])
        assert migrate(conn) == [m.version for m in MIGRATIONS[1:]]
        newer = (*MIGRATIONS, Migration(LATEST + 1, "future", "CREATE TABLE future_table (x int)"))
        assert migrate(conn, newer) == [LATEST + 1]
        with pytest.raises(SchemaError, match=f"schema version {LATEST + 1}, newer than this collector knows"):
            migrate(conn)


def test_a_database_of_the_previous_release_keeps_its_figures_and_takes_attention(pg_database: str) -> None:
    """Migration 4 on a database the previous release made and filled (schema 2 windows only): its
    rows and views keep their figures, with no attention; then schema 3 windows add theirs."""
    stream = str(uuid.uuid4())
    with connect(pg_database) as conn:
        migrate(conn, MIGRATIONS[:3])
        set_min_cell(conn, 5)
        # What the previous release's store wrote for two schema 2 windows of 10:00-11:00.
        hour = datetime(2026, 12, 1, 1, tzinfo=timezone.utc)  # window_payload's minute 60
        payload = window_payload("cam0", stream, 1, minute=60)
        conn.execute(
            "INSERT INTO windows (device, stream, seq, site, window_start, window_end, partial, observed_s,"
            " visitors, faces_peak, dwell_n, dwell_mean, payload, topic, collector) VALUES"
            " ('cam0', %(s)s, 1, 'shop', %(t)s, %(t)s + interval '1 minute', false, 60, 7, 5, 10, 12.0, %(p)s,"
            " 'edge/cam0/counts', 'old'),"
            " ('cam0', %(s)s, 2, 'shop', %(t)s + interval '1 minute', %(t)s + interval '2 minutes', false, 60, 7, 5,"
            " 10, 12.0, %(p)s, 'edge/cam0/counts', 'old')",
            {"s": stream, "t": hour, "p": json.dumps(payload)},
        )
        conn.execute("INSERT INTO hourly VALUES (%s, 'shop', 'cam0', 2, 0, 0, 120, 14, 20, 20, 240)", (hour,))
        before = conn.execute("SELECT * FROM visitors_daily").fetchall()
        assert migrate(conn) == [4]
        row = conn.execute("SELECT * FROM visitors_daily").fetchone()
        assert row is not None and tuple(row[: len(before[0])]) == before[0]  # the old columns, unchanged
        names = [c.name for c in conn.execute("SELECT * FROM visitors_daily LIMIT 0").description or ()]
        attention = dict(zip(names, row))
        assert {k: attention[k] for k in ("windows_attention", "viewers", "viewer_rate", "attention_s")} == {
            "windows_attention": 0,
            "viewers": None,
            "viewer_rate": None,
            "attention_s": None,
        }
        assert conn.execute("SELECT bool_or(attention), count(viewers) FROM windows").fetchone() == (False, 0)
        # A schema 3 window of the same hour, then one of an older device (schema 2) in the next.
        new = [
            parse_window("edge/cam0/counts", json.dumps(doc).encode(), "cam0")
            for doc in (
                window_payload("cam0", stream, 3, minute=62, attention=True),
                window_payload("cam0", stream, 4, minute=125),
            )
        ]
        WindowStore(conn, "new").write(new, [], [])  # type: ignore[arg-type]
        stored = conn.execute(
            "SELECT seq, attention, viewers, viewer_rate, attention_sum_s, attention_median_s FROM windows ORDER BY seq"
        ).fetchall()
        hours = conn.execute(
            "SELECT windows, visitors, dwell_n, windows_attention, viewers, viewer_rate, attention_s"
            " FROM visitors_hourly ORDER BY period_start"
        ).fetchall()
    assert stored == [
        (1, False, None, None, None, None),
        (2, False, None, None, None, None),
        (3, True, 5, 0.5, 31.5, 5.5),
        (4, False, None, None, None, None),
    ]
    # 01:00: 30 ended visitors, 5 viewers among the 10 of the one window that measured attention.
    assert hours == [(3, 21, 30, 1, 5, 0.5, 31.5), (1, 7, 10, 0, None, None, None)]


def test_attention_at_the_door() -> None:
    """Schema 3 windows carry all four attention keys or none, their viewers within their published
    visitors; schema 2 windows carry none. Anything else is refused with its reason."""
    stream = "6f1c2b4e-8a1d-4f7e-9a53-0d6f4c1e2b3a"
    good = window_payload("cam0", stream, 1, attention=True)
    off = {k: v for k, v in good.items() if k not in ("viewers", "viewer_rate", "attention_s", "viewers_by")}
    for doc in (good, off, window_payload("cam0", stream, 1)):
        assert isinstance(parse_window("edge/cam0/counts", json.dumps(doc).encode(), "cam0"), WindowRow), doc
    small = {**good, "viewers": None, "viewer_rate": None, "attention_s": {"sum": None, "median": None}}
    small["dwell_s"] = {"n": None, "mean": None, "p50": None, "p90": None}
    assert isinstance(parse_window("edge/cam0/counts", json.dumps(small).encode(), "cam0"), WindowRow)
    no_by = {k: v for k, v in good.items() if k != "viewers_by"}
    for doc, reason, kind in (
        ({**good, "schema": 2}, "viewers is a schema 3 key, the window says schema 2", "schema"),
        (no_by, "viewers without viewers_by: a window carries all of", "schema"),
        ({**good, "viewers": 11}, "viewers is 11, more than the published dwell_s.n (10)", "range"),
        ({**small, "viewers": 0}, "viewers is 0, more than the published dwell_s.n (None)", "range"),
        ({**good, "viewers": 3 << 30}, "viewers is 3221225472, expected a count from 0 to", "range"),
        ({**good, "viewer_rate": 1.5}, "viewer_rate must be smaller than or equal to 1", "schema"),
        ({**good, "attention_s": {"sum": -1, "median": 1}}, "attention_s.sum must be bigger than or equal", "schema"),
        ({**good, "viewers_by": {"expression": {}}}, "viewers_by must not contain", "schema"),
        ({**good, "schema": 4}, "schema is 4, this collector reads schema 2 and 3", "schema"),
    ):
        got = parse_window("edge/cam0/counts", json.dumps(doc).encode(), "cam0")
        assert isinstance(got, Rejected) and got.reason.startswith(reason) and got.kind == kind, (reason, got)


# --------------------------------------------------------------------------- the cell rule after summing

CELLS = {"gender": ("female", "male", "unknown"), "age": ("0-17", "18-34", "35-64", "65+", "unknown")}
T0 = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)


def _device_payload(device: str, site: str, stream: str, seq: int, minute: int, truth: dict[str, Any], k: int) -> str:
    """A window as a device with ``min_cell`` k publishes it (rules of edge.aggregator); schema 3
    with attention where ``truth`` has ``looked`` (each viewer's seconds and cells)."""
    n = sum(truth["gender"].values())
    suppressed: list[str] = []
    visitors: int | None = truth["visitors"]
    if visitors is not None and 1 <= visitors < k:
        visitors, suppressed = None, ["visitors"]
    doc: dict[str, Any] = {}
    hidden: dict[str, set[str]] = {}
    for name, labels in CELLS.items():
        cells = truth[name]
        hidden[name] = suppressed_cells(cells, k)
        doc[name] = {c: (None if c in hidden[name] else cells[c]) for c in labels}
        suppressed += [f"{name}.{c}" for c in labels if c in hidden[name]]
    if "looked" in truth:
        looked = truth["looked"]  # (seconds, gender, age) per viewer
        counts = {name: Counter(viewer[i] for viewer in looked) for i, name in enumerate(CELLS, start=1)}
        a, paths = attention_cells([v[0] for v in looked], n, counts, {c: truth[c] for c in CELLS}, hidden, k)
        doc |= {
            "viewers": a.viewers,
            "viewer_rate": a.rate,
            "attention_s": {"sum": a.seconds_sum, "median": a.seconds_median},
            "viewers_by": {name: dict(cells) for name, cells in a.by.items()},
        }
        suppressed += paths
    dwell_n: int | None = None if 1 <= n < k else n
    start = T0 + timedelta(minutes=minute)
    return dumps(
        {
            "schema": 3 if "looked" in truth else 2,
            "device": device,
            "site": site,
            "stream": stream,
            "seq": seq,
            "window": {
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end": (start + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "partial": False,
            },
            "observed_s": 900.0,
            "visitors": visitors,
            "today": {"date": "2026-12-01", "visitors": 0},
            "faces": {"peak": None, "mean": None},
            "dwell_s": {"n": dwell_n, "mean": None if dwell_n is None or n == 0 else 10.0, "p50": None, "p90": None},
            **doc,
            "suppressed": suppressed + (["dwell_s.n"] if dwell_n is None else []),
        }
    )


def _split(total: int, parts: int, draw: Callable[[Any], Any]) -> list[int]:
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=parts - 1, max_size=parts - 1)))
    bounds = [0, *cuts, total]
    return [bounds[i + 1] - bounds[i] for i in range(parts)]


@st.composite
def fleets(draw: Callable[[Any], Any]) -> dict[str, Any]:
    devices = draw(st.integers(1, 3))
    ks = [draw(st.integers(1, 6)) for _ in range(devices)]
    attention = [draw(st.booleans()) for _ in range(devices)]  # schema 3 with attention, or schema 2
    windows = []
    for d in range(devices):
        for minute in draw(st.lists(st.integers(0, 16 * 60 - 1), min_size=1, max_size=8, unique=True)):
            n = draw(st.integers(0, 14))
            truth: dict[str, Any] = {"visitors": draw(st.integers(0, 14))}
            if attention[d]:  # each ended visitor: gender, age and whether (how long) they looked
                people = [
                    (draw(st.sampled_from(CELLS["gender"])), draw(st.sampled_from(CELLS["age"])), draw(st.booleans()))
                    for _ in range(n)
                ]
                for i, (name, labels) in enumerate(CELLS.items()):
                    truth[name] = {c: sum(p[i] == c for p in people) for c in labels}
                truth["looked"] = [(2.5, g, a) for g, a, looked in people if looked]
            else:
                for name, labels in CELLS.items():
                    truth[name] = dict(zip(labels, _split(n, len(labels), draw)))
            windows.append((d, minute, truth))
    return {"ks": ks, "windows": windows, "fleet_k": draw(st.integers(2, 6))}


def _ok(value: int | None, k: int) -> bool:
    return value is None or value == 0 or value >= k


@pytest.fixture(scope="module")
def views_db(pg_databases: Callable[[], str]) -> str:
    name = pg_databases()
    with connect(name) as conn:
        migrate(conn)
    return name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fleet=fleets())
def test_summed_views_never_show_or_let_one_derive_a_count_below_min_cell(views_db: str, fleet: dict[str, Any]) -> None:
    k = fleet["fleet_k"]
    streams = [str(uuid.uuid4()) for _ in fleet["ks"]]
    rows = []
    true_visitors: dict[tuple[str, str], int] = defaultdict(int)
    for seq, (d, minute, truth) in enumerate(fleet["windows"], start=1):
        site = "north" if d % 2 == 0 else "south"
        text = _device_payload(f"cam{d}", site, streams[d], seq, minute, truth, fleet["ks"][d])
        row = parse_window(f"edge/cam{d}/counts", text.encode(), f"cam{d}")
        assert not hasattr(row, "reason"), row
        rows.append(row)
        true_visitors[(site, f"cam{d}")] += truth["visitors"]
    with connect(views_db) as conn:
        conn.execute("TRUNCATE windows, hourly, hourly_cells")
        set_min_cell(conn, k)
        WindowStore(conn, "prop").write(rows, [], [])
        for view in ("visitors_hourly", "visitors_daily", "visitors_hourly_site", "visitors_daily_site"):
            for visitors, dwell_n in conn.execute(f"SELECT visitors, dwell_n FROM {view}"):  # noqa: S608
                assert _ok(visitors, k) and _ok(dwell_n, k), (view, visitors, dwell_n)
            _check_viewers(conn, view, k, exact=min(fleet["ks"]) >= k)
        for site, device, visitors in conn.execute("SELECT site, device, visitors FROM visitors_daily"):
            assert visitors is None or visitors <= true_visitors[(site, device)]
        for per_device in (False, True):
            mix = conn.execute(
                "SELECT site, device, attribute, cell, visitors, n FROM fleet_mix(%s, %s, %s)",
                (T0, T0 + timedelta(days=1), per_device),
            ).fetchall()
            groups: dict[tuple[str, str | None, str], list[tuple[int | None, int | None]]] = defaultdict(list)
            for site, device, attribute, _cell, count, n in mix:
                assert _ok(count, k), (site, device, attribute, count)
                groups[(site, device, attribute)].append((count, n))
            for key, cells in groups.items():
                n = cells[0][1]
                if n is None:  # the total itself is 1..k-1: every cell is hidden
                    assert all(c is None for c, _ in cells), key
                    continue
                hidden = n - sum(c for c, _ in cells if c is not None)
                assert hidden == 0 or hidden >= k, (key, cells, hidden)


def _check_viewers(conn: Any, view: str, k: int, exact: bool) -> None:
    """Viewers in a row: 0 or >= k, and so are the non-viewers among the same windows' visitors
    (which viewer_rate gives away) and dwell_n minus viewers; attention seconds only beside shown
    viewers. ``exact``: every device ran with a min_cell of at least k, so the view hides nothing
    the devices published (the sums of published viewers are shown whole)."""
    query = f"""
        SELECT v.viewers, v.viewer_rate, v.attention_s, v.dwell_n, v.windows_attention, h.viewers, h.viewers_n,
               h.attention_s
        FROM {view} v JOIN (
            SELECT date_trunc(CASE WHEN '{view}' LIKE '%hourly%' THEN 'hour' ELSE 'day' END, hour, 'UTC') AS period,
                   site, CASE WHEN '{view}' LIKE '%site' THEN NULL ELSE device END AS device,
                   sum(viewers)::bigint AS viewers, sum(viewers_n)::bigint AS viewers_n, sum(attention_s) AS attention_s
            FROM hourly GROUP BY 1, 2, 3) h
        ON h.period = v.period_start AND h.site = v.site AND h.device IS NOT DISTINCT FROM v.device
    """  # noqa: S608
    for viewers, rate, seconds, dwell_n, measured, published, viewers_n, published_s in conn.execute(query):
        if viewers is None:
            assert rate is None and seconds is None, (view, viewers, rate, seconds)
            assert not exact or published is None, (view, published, viewers_n, dwell_n)
            continue
        assert measured > 0 and _ok(viewers, k), (view, viewers)
        if rate:  # the viewers' windows' visitors follow from viewers and rate
            assert _ok(round(viewers / rate) - viewers, k), (view, viewers, rate)
        assert dwell_n is not None and _ok(dwell_n - viewers, k), (view, viewers, dwell_n)
        assert (viewers, seconds) == (published, published_s), view
        assert rate == (pytest.approx(viewers / viewers_n) if viewers_n else None), (view, rate, viewers_n)


def test_with_every_device_at_the_fleets_min_cell_the_views_hide_nothing_more(views_db: str) -> None:
    """Sums of counts that are 0 or >= k stay so: the rule after summing costs no published data."""
    stream = str(uuid.uuid4())
    truths = [
        {
            "visitors": 6,
            "gender": {"female": 5, "male": 5, "unknown": 0},
            "age": {"0-17": 0, "18-34": 10, "35-64": 0, "65+": 0, "unknown": 0},
        },
        {
            "visitors": 2,
            "gender": {"female": 7, "male": 2, "unknown": 0},
            "age": {"0-17": 0, "18-34": 9, "35-64": 0, "65+": 0, "unknown": 0},
        },
    ]
    rows = [
        parse_window("edge/cam0/counts", _device_payload("cam0", "north", stream, i + 1, 5 * i, t, 5).encode(), "cam0")
        for i, t in enumerate(truths)
    ]
    with connect(views_db) as conn:
        conn.execute("TRUNCATE windows, hourly, hourly_cells")
        set_min_cell(conn, 5)
        WindowStore(conn, "prop").write(rows, [], [])  # type: ignore[arg-type]
        hourly = conn.execute("SELECT windows, windows_suppressed, visitors, dwell_n FROM visitors_hourly").fetchall()
        gender = dict(
            conn.execute(
                "SELECT cell, visitors FROM fleet_mix(%s, %s) WHERE attribute = 'gender'", (T0, T0 + timedelta(days=1))
            ).fetchall()
        )
    # visitors 2 was null on the device: the hour shows the 6 it can show, and says one window hid some.
    assert hourly == [(2, 1, 6, 19)]
    # The second window's device hid male 2 and, as its complement, female 7: the sums show what the
    # first window published, and the 9 hidden of n 19 are >= 5, so nothing more is hidden.
    assert gender == {"female": 5, "male": 5, "unknown": 0}
