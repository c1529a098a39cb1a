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
from fleet_parts import people_doc, window_payload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg_database import connect

from edge.aggregator import suppressed_cells
from edge.fleet.messages import PEOPLE_KEYS, Rejected, WindowRow, parse_window
from edge.fleet.schema import LATEST, MIGRATIONS, Migration, SchemaError, migrate, set_min_cell
from edge.fleet.store import WindowStore
from edge.people_cells import PeopleTally, people_cells
from edge.people_config import LineConfig, PeopleConfig
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
        assert migrate(conn) == [4, 5]
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
    for doc in (good, off, window_payload("cam0", stream, 1), {**good, "schema": 4}):
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
        ({**good, "schema": 5}, "schema is 5, this collector reads schema 2, 3 and 4", "schema"),
    ):
        got = parse_window("edge/cam0/counts", json.dumps(doc).encode(), "cam0")
        assert isinstance(got, Rejected) and got.reason.startswith(reason) and got.kind == kind, (reason, got)


_VISITORS_VIEWS = ("visitors_hourly", "visitors_daily", "visitors_hourly_site", "visitors_daily_site")
_PEOPLE_VIEWS = ("people_hourly", "people_daily", "people_hourly_site", "people_daily_site")


def test_a_database_of_the_previous_release_keeps_its_figures_and_takes_people(pg_database: str) -> None:
    """Migration 5 on a database the previous release made and filled (schema 2 and 3 windows): its
    rows and visitors views keep their figures, no window counted people and the people views are
    empty; then schema 4 windows (people published, people suppressed, no line) add theirs."""
    stream = str(uuid.uuid4())
    with connect(pg_database) as conn:
        migrate(conn, MIGRATIONS[:4])
        set_min_cell(conn, 5)
        # What the previous release's store wrote for a schema 3 and a schema 2 window of 01:00-02:00.
        hour = datetime(2026, 12, 1, 1, tzinfo=timezone.utc)
        conn.execute(
            "INSERT INTO windows (device, stream, seq, site, window_start, window_end, partial, observed_s, visitors,"
            " faces_peak, dwell_n, dwell_mean, attention, viewers, viewer_rate, attention_sum_s, attention_median_s,"
            " payload, topic, collector) VALUES"
            " ('cam0', %(s)s, 1, 'shop', %(t)s, %(t)s + interval '1 minute', false, 60, 7, 5, 10, 12.0, true, 5, 0.5,"
            " 31.5, 5.5, %(p3)s, 'edge/cam0/counts', 'old'),"
            " ('cam0', %(s)s, 2, 'shop', %(t)s + interval '1 minute', %(t)s + interval '2 minutes', false, 60, 7, 5,"
            " 10, 12.0, false, null, null, null, null, %(p2)s, 'edge/cam0/counts', 'old')",
            {
                "s": stream,
                "t": hour,
                "p3": json.dumps(window_payload("cam0", stream, 1, minute=60, attention=True)),
                "p2": json.dumps(window_payload("cam0", stream, 2, minute=61)),
            },
        )
        conn.execute(
            "INSERT INTO hourly VALUES (%s, 'shop', 'cam0', 2, 0, 0, 120, 14, 20, 20, 240, 1, 0, 5, 10, 31.5)", (hour,)
        )
        before = {v: conn.execute(f"SELECT * FROM {v} ORDER BY 1, 2, 3").fetchall() for v in _VISITORS_VIEWS}  # noqa: S608
        assert migrate(conn) == [5]
        after = {v: conn.execute(f"SELECT * FROM {v} ORDER BY 1, 2, 3").fetchall() for v in _VISITORS_VIEWS}  # noqa: S608
        assert after == before and before["visitors_hourly"]
        old = conn.execute(
            "SELECT bool_or(people_counted), bool_or(crossing_line), count(people), count(crossings_in) FROM windows"
        ).fetchone()
        assert old == (False, False, 0, 0)
        assert conn.execute("SELECT windows_people, people, windows_line FROM hourly").fetchall() == [(0, None, 0)]
        for view in _PEOPLE_VIEWS:  # no window counted people: no row, rather than rows of nulls
            assert conn.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,), view  # noqa: S608
        # Schema 4 windows of the same hour (people published; people 1..4, its parts hidden with it,
        # counted without a line), then one of an older device (schema 3) in the next hour.
        published = window_payload("cam0", stream, 3, minute=62, attention=True, people=True)
        small = window_payload("cam0", stream, 4, minute=63, people=True)
        small |= {"people": None, "people_with_face": None, "passers_by": None, "stayers": None}
        small.pop("crossings")
        small["suppressed"] = ["people", "people_with_face", "passers_by", "stayers", *small["suppressed"][1:]]
        new = [
            parse_window("edge/cam0/counts", json.dumps(doc).encode(), "cam0")
            for doc in (published, small, window_payload("cam0", stream, 5, minute=125, attention=True))
        ]
        WindowStore(conn, "new").write(new, [], [])  # type: ignore[arg-type]
        stored = conn.execute(
            "SELECT seq, people_counted, people, people_with_face, passers_by, stayers, crossing_line, crossings_in,"
            " crossings_out, payload -> 'zones' -> 'door' FROM windows ORDER BY seq"
        ).fetchall()
        hours = conn.execute(
            "SELECT windows, windows_suppressed, people, people_with_face, passers_by, stayers, windows_line,"
            " crossings_in, crossings_out FROM people_hourly ORDER BY period_start"
        ).fetchall()
        visitors = conn.execute("SELECT windows, visitors, viewers FROM visitors_hourly ORDER BY 1").fetchall()
    assert stored == [
        (1, False, None, None, None, None, False, None, None, None),
        (2, False, None, None, None, None, False, None, None, None),
        (3, True, 20, 10, 15, 5, True, 6, None, {"peak": 5, "mean": 2.5}),
        (4, True, None, None, None, None, False, None, None, {"peak": 5, "mean": 2.5}),
        (5, False, None, None, None, None, False, None, None, None),
    ]
    # 01:00: two windows counted people, one hid them; 6 crossings in, the out ones hidden on the device.
    assert hours == [(2, 1, 20, 10, 15, 5, 1, 6, None)]
    assert visitors == [(1, 7, 5), (4, 28, 10)]


def test_people_at_the_door() -> None:
    """Schema 4 windows carry all four people keys or none, crossings and zones only beside them, and
    their parts add up as the device's k-rule leaves them (edge.people_cells); earlier schemas carry
    none. Anything else is refused with its reason, without stopping the good windows behind it."""
    stream = "6f1c2b4e-8a1d-4f7e-9a53-0d6f4c1e2b3a"
    good = window_payload("cam0", stream, 1, attention=True, people=True)
    plain = {k: v for k, v in good.items() if k not in ("crossings", "zones")}  # no line, no zone
    hidden = {**good, "people": None, "people_with_face": None, "passers_by": None, "stayers": None}
    split = {**good, "people_with_face": None, "passers_by": None, "stayers": None}  # the sides were 1..4
    quiet = {**good, "people": 0, "people_with_face": 0, "passers_by": 0, "stayers": 0, "zones": {}}
    crossings = {**good, "crossings": {"in": None, "out": None}}
    off = {k: v for k, v in good.items() if k not in (*PEOPLE_KEYS, "crossings", "zones")}
    for doc in (good, plain, hidden, split, quiet, crossings, off, window_payload("cam0", stream, 1, people=True)):
        row = parse_window("edge/cam0/counts", json.dumps(doc).encode(), "cam0")
        assert isinstance(row, WindowRow), (doc, row)
        assert (row.window.people is None) == (doc is off)
    nine = {f"z{i}": {"peak": 0, "mean": 0.0} for i in range(9)}
    for doc, reason, kind in (
        ({**good, "schema": 3}, "people is a schema 4 key, the window says schema 3", "schema"),
        ({**off, "schema": 3, "zones": {}}, "zones is a schema 4 key, the window says schema 3", "schema"),
        ({**off, "crossings": {"in": 1, "out": 1}}, "crossings without people: a window carries all of", "schema"),
        (
            {k: v for k, v in good.items() if k != "stayers"},
            "people without stayers: a window carries all of",
            "schema",
        ),
        ({**good, "people_with_face": 21}, "people_with_face is 21, more than people (20)", "range"),
        ({**hidden, "people_with_face": 0}, "people_with_face is 0 but people is null", "range"),
        ({**hidden, "stayers": 5}, "stayers is 5 but people is null", "range"),
        ({**good, "stayers": None}, "passers_by is 15 and stayers None: a device publishes or hides both", "range"),
        ({**good, "stayers": 6}, "passers_by + stayers is 21, not people (20)", "range"),
        ({**good, "people": 3 << 30}, "people is 3221225472, expected a count from 0 to", "range"),
        ({**good, "crossings": {"in": 3 << 30, "out": 0}}, "crossings.in is 3221225472, expected a count", "range"),
        ({**good, "crossings": {"in": 6}}, "crossings must contain ['out'] properties", "schema"),
        ({**good, "crossings": None}, "crossings must be object", "schema"),
        ({**good, "zones": {"Till": {"peak": 0, "mean": 0}}}, "zones must be named by propertyName", "schema"),
        ({**good, "zones": nine}, "zones has 9 zones, a device has at most 8", "schema"),
        ({**good, "zones": {"till": {"peak": None, "mean": 0.5}}}, "zones.till has peak None and mean 0.5", "range"),
        (
            {**good, "zones": {"till": {"peak": 5, "mean": 5.5}}},
            "zones.till.mean is 5.5, more than its peak (5)",
            "range",
        ),
        (
            {**good, "zones": {"till": {"peak": -1, "mean": 0}}},
            "zones.till.peak must be bigger than or equal to 0",
            "schema",
        ),
    ):
        got = parse_window("edge/cam0/counts", json.dumps(doc).encode(), "cam0")
        assert isinstance(got, Rejected) and got.reason.startswith(reason) and got.kind == kind, (reason, got)


# --------------------------------------------------------------------------- the cell rule after summing

CELLS = {"gender": ("female", "male", "unknown"), "age": ("0-17", "18-34", "35-64", "65+", "unknown")}
T0 = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)


def _device_payload(device: str, site: str, stream: str, seq: int, minute: int, truth: dict[str, Any], k: int) -> str:
    """A window as a device with ``min_cell`` k publishes it (rules of edge.aggregator); schema 3
    with attention where ``truth`` has ``looked`` (each viewer's seconds and cells), schema 4 with
    people where it has ``persons`` (edge.people_cells)."""
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
    if "persons" in truth:  # (with a face, dwell seconds) per person whose track ended
        persons = truth["persons"]
        tally = PeopleTally([d for _, d in persons], sum(f for f, _ in persons), *truth["crossings"])
        line = LineConfig(start=(0.0, 0.5), end=(1.0, 0.5)) if truth["line"] else None
        people, paths = people_cells(tally, PeopleConfig(line=line), k)
        doc |= people_doc(people)
        suppressed = paths + suppressed
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
            "schema": 4 if "persons" in truth else 3 if "looked" in truth else 2,
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
    counting = [draw(st.booleans()) for _ in range(devices)]  # schema 4 with people, with or without a line
    line = [draw(st.booleans()) for _ in range(devices)]
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
            if counting[d]:
                persons = draw(st.integers(0, 16))
                truth["persons"] = [(draw(st.booleans()), draw(st.sampled_from((2.0, 30.0)))) for _ in range(persons)]
                truth["crossings"] = (draw(st.integers(0, 9)), draw(st.integers(0, 9)))
                truth["line"] = line[d]
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
        for view in _PEOPLE_VIEWS:
            _check_people(conn, view, k, exact=min(fleet["ks"]) >= k)
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


def _check_people(conn: Any, view: str, k: int, exact: bool) -> None:
    """People in a row: 0 or >= k, the sum of what the row's windows published; with a face only where
    it, the people without one of the windows that published the split and the row's people minus it
    are each 0 or >= k; passers-by and stayers together, only where both and the people of the windows
    that hid them are; crossings each 0 or >= k. ``exact``: every device ran with a min_cell of at
    least k, so the view shows every sum the devices published (nothing hidden on top)."""
    query = f"""
        SELECT v.windows, v.people, v.people_with_face, v.passers_by, v.stayers, v.windows_line, v.crossings_in,
               v.crossings_out, h.windows, h.people, h.with_face, h.face_n, h.passers_by, h.stayers, h.lines,
               h.crossings_in, h.crossings_out
        FROM {view} v RIGHT JOIN (
            SELECT date_trunc(CASE WHEN '{view}' LIKE '%hourly%' THEN 'hour' ELSE 'day' END, hour, 'UTC') AS period,
                   site, CASE WHEN '{view}' LIKE '%site' THEN NULL ELSE device END AS device,
                   sum(windows_people)::bigint AS windows, sum(people)::bigint AS people,
                   sum(people_with_face)::bigint AS with_face, sum(people_face_n)::bigint AS face_n,
                   sum(passers_by)::bigint AS passers_by, sum(stayers)::bigint AS stayers,
                   sum(windows_line)::bigint AS lines, sum(crossings_in)::bigint AS crossings_in,
                   sum(crossings_out)::bigint AS crossings_out
            FROM hourly GROUP BY 1, 2, 3) h
        ON h.period = v.period_start AND h.site = v.site AND h.device IS NOT DISTINCT FROM v.device
    """  # noqa: S608
    for row in conn.execute(query):
        (windows, people, face, passers, stayers, lines, ins, outs) = row[:8]
        (counted, p_sum, f_sum, f_n, pb_sum, st_sum, l_sum, in_sum, out_sum) = row[8:]
        assert (windows is None) == (counted == 0), (view, row)  # a row only where some window counted people
        if windows is None:
            continue
        assert (windows, lines) == (counted, l_sum), (view, row)
        for shown, published in ((people, p_sum), (ins, in_sum), (outs, out_sum)):
            assert _ok(shown, k) and shown in (None, published), (view, row)
            assert not exact or shown == published, (view, row)
        if face is not None:
            assert _ok(face, k) and _ok(f_n - face, k) and _ok((p_sum or 0) - face, k) and face == f_sum, (view, row)
        assert not exact or face == f_sum, (view, row)
        assert (passers is None) == (stayers is None), (view, row)
        if passers is not None:
            assert (passers, stayers) == (pb_sum, st_sum) and _ok(passers, k) and _ok(stayers, k), (view, row)
            assert _ok((p_sum or 0) - passers - stayers, k), (view, row)
        assert not exact or (passers, stayers) == (pb_sum, st_sum), (view, row)


def test_a_people_split_is_shown_only_where_every_side_of_its_sums_is_safe(views_db: str) -> None:
    """Windows of a device with a smaller min_cell (2 or 3) than the fleet's (5), summed per hour: a
    split whose published sides are safe is still hidden where the people of the windows that hid it
    (or its own other side) come to 1..4; people and crossings are hidden where their sum is 1..4."""
    stream = str(uuid.uuid4())
    parts = ("people", "people_with_face", "passers_by", "stayers")

    def window(seq: int, minute: int, counts: tuple[int | None, ...], crossings: tuple[int, int]) -> WindowRow:
        doc = window_payload("cam0", stream, seq, minute=minute, people=True)
        doc |= dict(zip(parts, counts)) | {"crossings": dict(zip(("in", "out"), crossings))}
        doc["suppressed"] = [p for p, v in zip(parts, counts) if v is None] + ["zones.till.peak", "zones.till.mean"]
        row = parse_window("edge/cam0/counts", json.dumps(doc).encode(), "cam0")
        assert isinstance(row, WindowRow), row
        return row

    rows = [
        window(1, 0, (10, 10, 5, 5), (6, 0)),  # 09:00, k 5
        window(2, 1, (3, None, None, None), (0, 0)),  # k 3: 1 with a face, 1 passer-by, hidden
        window(3, 60, (10, 10, 5, 5), (5, 5)),  # 10:00, k 5
        window(4, 120, (8, 6, 4, 4), (3, 0)),  # 11:00, k 2
    ]
    with connect(views_db) as conn:
        conn.execute("TRUNCATE windows, hourly, hourly_cells")
        set_min_cell(conn, 5)
        WindowStore(conn, "prop").write(rows, [], [])
        hours = conn.execute(
            "SELECT windows, people, people_with_face, passers_by, stayers, crossings_in, crossings_out"
            " FROM people_hourly ORDER BY period_start"
        ).fetchall()
        day = conn.execute("SELECT people, people_with_face, passers_by, stayers FROM people_daily_site").fetchall()
    assert hours == [
        # 13 people, 10 with a face and 0 without among the windows that said; but 13 - 10 = 3 without
        # one in all (the second window's): hidden, and so are 5 and 5 passers-by and stayers of 13.
        (2, 13, None, None, None, 6, 0),
        (1, 10, 10, 5, 5, 5, 5),
        (1, 8, None, None, None, None, 0),  # 2 without a face, 4 passers-by, 3 crossings in: each 1..4
    ]
    assert day == [(31, None, None, None)]  # 2 + 3 without a face, 3 people of a hidden split


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
