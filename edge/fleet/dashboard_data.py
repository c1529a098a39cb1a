"""What the dashboard's page plots, read from the views in one snapshot and shaped into series.

Every figure comes from the views and ``fleet_mix``, which already apply the minimum-cell rule
after summing: this module only reshapes rows and never sees a count the views did not publish.
Apart from ``edge.fleet.dashboard`` (HTTP) so that each stays a size one can read.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

HOURS = 48  # the hourly charts' span


def summary(conn: psycopg.Connection[Any], days: int, offline_after_s: float) -> dict[str, Any]:
    """Everything the page draws, in one read-only transaction (one consistent snapshot).

    Series are lists aligned with their axis; ``None`` is a gap: either no window was stored
    (``hidden`` false) or the count is 1..min_cell-1 and was withheld (``hidden`` true). In
    ``attention`` an hour is a gap (not withheld) when no window of it measured attention, in
    ``people`` when none counted people (crossings: had a counting line).
    """
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT now(), fleet_min_cell()").fetchone()
        assert row is not None
        now: datetime = row[0].astimezone(timezone.utc)
        min_cell: int = row[1]
        hour0 = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
        day0 = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
        hours = [hour0 + timedelta(hours=i) for i in range(HOURS)]
        day_axis = [day0 + timedelta(days=i) for i in range(days)]

        hourly = conn.execute(
            "SELECT period_start, site, visitors, viewers, attention_s, windows_attention FROM visitors_hourly_site"
            " WHERE period_start >= %s AND period_start <= %s",
            (hour0, now),
        ).fetchall()
        people = conn.execute(
            "SELECT period_start, site, people, people_with_face, windows_line, crossings_in, crossings_out"
            " FROM people_hourly_site WHERE period_start >= %s AND period_start <= %s",
            (hour0, now),
        ).fetchall()
        daily = conn.execute(
            "SELECT period_start, site, device, visitors FROM visitors_daily"
            " WHERE period_start >= %s AND period_start <= %s",
            (day0, now),
        ).fetchall()
        dwell = conn.execute(
            "SELECT period_start, site, dwell_mean_s FROM visitors_daily_site"
            " WHERE period_start >= %s AND period_start <= %s",
            (day0, now),
        ).fetchall()
        mix = conn.execute(
            "SELECT site, attribute, cell, visitors, n FROM fleet_mix(%s, %s)"
            " WHERE attribute IN ('gender', 'age', 'expression')",
            (day0, now),
        ).fetchall()
        devices = conn.execute(
            """
            SELECT device, site, status, status_at, last_seen, last_window_end, health_at,
                   coalesce(status = 'online' AND last_seen >= now() - make_interval(secs => %s), false),
                   CASE WHEN jsonb_typeof(health -> 'spool' -> 'depth') = 'number'
                        THEN (health -> 'spool' ->> 'depth')::numeric::bigint END,
                   CASE WHEN jsonb_typeof(health -> 'fps') = 'number' THEN (health ->> 'fps')::float8 END,
                   CASE WHEN jsonb_typeof(health -> 'version') = 'string' THEN health ->> 'version' END,
                   CASE WHEN jsonb_typeof(health -> 'uptime_s') = 'number' THEN (health ->> 'uptime_s')::float8 END
            FROM devices ORDER BY site NULLS LAST, device
            """,
            (offline_after_s,),
        ).fetchall()

    device_sites = {r[2]: r[1] for r in daily}
    return {
        "generated_at": iso(now),
        "min_cell": min_cell,
        "days": days,
        "hourly": {
            "hours": [iso(h) for h in hours],
            "series": _series(hours, ((r[1], r[0], r[2]) for r in hourly)),
        },
        "attention": _attention(hours, hourly),
        "people": _people(hours, people),
        "daily": {
            "days": [d.date().isoformat() for d in day_axis],
            "series": [
                {**s, "site": device_sites.get(s["name"])}
                for s in _series(day_axis, ((r[2], r[0], r[3]) for r in daily))
            ],
        },
        "dwell": {
            "days": [d.date().isoformat() for d in day_axis],
            "series": _series(day_axis, ((r[1], r[0], r[2]) for r in dwell), ndigits=1),
        },
        "mix": _mix(mix),
        "devices": [
            {
                "device": r[0],
                "site": r[1],
                "status": r[2],
                "status_at": iso(r[3]),
                "last_seen": iso(r[4]),
                "last_window_end": iso(r[5]),
                "health_at": iso(r[6]),
                "online": r[7],
                "spool_depth": r[8],
                "fps": r[9],
                "version": r[10],
                "uptime_s": r[11],
            }
            for r in devices
        ],
    }


def _series(axis: list[datetime], rows: Any, ndigits: int | None = None) -> list[dict[str, Any]]:
    """Rows of (name, period start, value) as one list per name aligned with ``axis``."""
    index = {t: i for i, t in enumerate(axis)}
    out: dict[str, dict[str, Any]] = {}
    for name, period, value in rows:
        i = index.get(period.astimezone(timezone.utc))
        if i is None:
            continue
        s = out.setdefault(name, {"name": name, "values": [None] * len(axis), "hidden": [False] * len(axis)})
        if value is None:
            s["hidden"][i] = True
        else:
            s["values"][i] = round(float(value), ndigits) if ndigits is not None else int(value)
    return [out[k] for k in sorted(out)]


def _attention(hours: list[datetime], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Viewers and attention minutes per hour and site, from the hours in which some window measured
    attention (schema 3 with attention on): an hour without one is a gap, not a withheld count."""
    measured = [r for r in rows if r[5]]
    return {
        "hours": [iso(h) for h in hours],
        "viewers": _series(hours, ((r[1], r[0], r[3]) for r in measured)),
        "minutes": _series(hours, ((r[1], r[0], None if r[4] is None else r[4] / 60) for r in measured), ndigits=1),
    }


def _people(hours: list[datetime], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """People per hour and site, those of them with a face, and crossings of the counting line in and
    out. The people views hold only hours in which some window counted people (schema 4 with people
    on), and crossings come only from hours in which some window had a line: any other hour is a gap,
    not a withheld count."""
    lined = [r for r in rows if r[4]]
    return {
        "hours": [iso(h) for h in hours],
        "people": _series(hours, ((r[1], r[0], r[2]) for r in rows)),
        "with_face": _series(hours, ((r[1], r[0], r[3]) for r in rows)),
        "crossings_in": _series(hours, ((r[1], r[0], r[5]) for r in lined)),
        "crossings_out": _series(hours, ((r[1], r[0], r[6]) for r in lined)),
    }


def _mix(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """fleet_mix rows as one entry per site and attribute: cells (null = withheld) and total n."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for site, attribute, cell, visitors, n in rows:
        entry = out.setdefault((site, attribute), {"site": site, "attribute": attribute, "n": n, "cells": {}})
        entry["cells"][cell] = visitors
    for entry in out.values():
        entry["cells"] = dict(sorted(entry["cells"].items(), key=lambda kv: _cell_order(kv[0])))
    return [out[k] for k in sorted(out)]


def _cell_order(cell: str) -> tuple[int, float, str]:
    """Age brackets by their lower bound, "unknown" last, anything else by name."""
    if cell == "unknown":
        return (2, 0.0, cell)
    m = re.match(r"(\d+)", cell)
    return (0, float(m.group(1)), cell) if m else (1, 0.0, cell)


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
