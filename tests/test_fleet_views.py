"""The collector's schema on a real PostgreSQL: migrations, and the minimum-cell rule after summing
(a property test over random fleets whose devices suppress with the real aggregator's rule)."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg_database import connect

from edge.aggregator import suppressed_cells
from edge.fleet.messages import parse_window
from edge.fleet.schema import LATEST, MIGRATIONS, Migration, SchemaError, migrate, set_min_cell
from edge.fleet.store import WindowStore
from edge.sinks.base import dumps


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


# --------------------------------------------------------------------------- the cell rule after summing

CELLS = {"gender": ("female", "male", "unknown"), "age": ("0-17", "18-34", "35-64", "65+", "unknown")}
T0 = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)


def _device_payload(device: str, site: str, stream: str, seq: int, minute: int, truth: dict[str, Any], k: int) -> str:
    """A window as a device with ``min_cell`` k publishes it (rules of edge.aggregator)."""
    n = sum(truth["gender"].values())
    suppressed: list[str] = []
    visitors: int | None = truth["visitors"]
    if visitors is not None and 1 <= visitors < k:
        visitors, suppressed = None, ["visitors"]
    doc: dict[str, Any] = {}
    for name, labels in CELLS.items():
        cells = truth[name]
        hidden = suppressed_cells(cells, k)
        doc[name] = {c: (None if c in hidden else cells[c]) for c in labels}
        suppressed += [f"{name}.{c}" for c in labels if c in hidden]
    dwell_n: int | None = None if 1 <= n < k else n
    start = T0 + timedelta(minutes=minute)
    return dumps(
        {
            "schema": 2,
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
    windows = []
    for d in range(devices):
        for minute in draw(st.lists(st.integers(0, 16 * 60 - 1), min_size=1, max_size=8, unique=True)):
            n = draw(st.integers(0, 14))
            truth: dict[str, Any] = {"visitors": draw(st.integers(0, 14))}
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
