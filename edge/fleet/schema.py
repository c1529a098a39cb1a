"""The collector's database schema: versioned, idempotent migrations applied at start-up.

Every migration runs once, in its own transaction, under an advisory lock, so
two collectors starting together (a shared subscription) cannot race, and a
collector of an older version refuses a database a newer one has migrated.

What the views guarantee (the minimum-cell rule after summing)
--------------------------------------------------------------
Devices publish a count of 1..k-1 as null (``edge.aggregator``). The views
sum only published values, then apply the rule again with the fleet's
``min_cell`` (``fleet_settings``, set from the collector's config):

* every count a view returns is null, 0 or >= ``min_cell``;
* in a breakdown row set (one period, site/device and attribute), the total
  ``n`` minus the published cells is 0 or >= ``min_cell``: whatever is hidden
  (cells null on the devices, plus cells hidden here) is never 1..k-1 people,
  and a lone hidden cell never occurs (complementary suppression);
* the views only add published numbers: when every device's ``min_cell`` is
  at least the fleet's, combining rows (a day minus its hours) reveals nothing
  a device did not publish itself. A device with a smaller ``min_cell``
  publishes small counts; each row still obeys the rule, but a difference of
  rows of different periods could expose one of them. The collector counts
  such windows (``below_min_cell`` in its health) and logs the device.
* viewers (schema 3) are a part of the ended visitors (``dwell_n``): a row
  shows its summed viewers, viewer_rate and attention seconds only when the
  viewers, the non-viewers of the windows that published viewers and the
  row's ``dwell_n`` minus its viewers are each 0 or >= ``min_cell``; else all
  three are null (as they are where no window measured attention).
* people (schema 4) have views of their own (``people_*``): a row shows its
  summed people, crossings in and crossings out each when 0 or >= ``min_cell``;
  its people with a face only when they, the people without one among the
  windows that published the split and the row's people minus them are each
  0 or >= ``min_cell``; passers-by and stayers only when both and the people
  of the windows that hid them are (``fleet_split_shown``: the device's rule
  for a split, ``edge.people_cells``, after summing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from edge.fleet.people_schema import PEOPLE, people_view

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key: any constant unique to this application.
_LOCK_KEY = 0x65646765_666C7400 & 0x7FFFFFFFFFFFFFFF


class SchemaError(ValueError):
    """The database holds a schema this collector cannot use (newer than it knows): exit 2, like a bad config."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


_TABLES = """
CREATE TABLE fleet_settings (
    key text PRIMARY KEY,
    value jsonb NOT NULL
);
INSERT INTO fleet_settings VALUES ('min_cell', '5');

CREATE TABLE windows (
    device text NOT NULL,
    stream uuid NOT NULL,
    seq bigint NOT NULL,
    site text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    partial boolean NOT NULL,
    observed_s double precision NOT NULL,
    visitors integer,            -- null: 1..k-1, suppressed on the device
    faces_peak integer,
    dwell_n integer,
    dwell_mean double precision,
    dwell_p50 double precision,
    dwell_p90 double precision,
    payload jsonb NOT NULL,      -- the window as published (schema 2)
    topic text NOT NULL,
    collector text NOT NULL,     -- client id of the collector that stored it
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (device, stream, seq)
);
CREATE INDEX windows_by_start ON windows (window_start);
CREATE INDEX windows_by_site_start ON windows (site, window_start);

-- Messages on a counts topic that are not a valid window: kept (and acknowledged) so nothing
-- vanishes unexplained; the reason names what was wrong.
CREATE TABLE rejected (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    reason text NOT NULL,
    payload bytea NOT NULL,
    collector text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Hourly roll-ups of the windows, kept in the transaction that stores each new window (the store's
-- INSERT ... RETURNING feeds them, so a duplicate never counts twice). The views read these, not
-- the raw windows: a page over weeks of a large fleet reads hours, not millions of windows.
-- Sums are of published values only; null while no window of the hour published one.
CREATE TABLE hourly (
    hour timestamptz NOT NULL,
    site text NOT NULL,
    device text NOT NULL,
    windows integer NOT NULL,
    windows_partial integer NOT NULL,
    windows_suppressed integer NOT NULL,   -- windows whose visitors were null (1..k-1)
    observed_s double precision NOT NULL,
    visitors bigint,
    dwell_n bigint,
    dwell_mean_n bigint,                   -- ended visits of windows that published a mean
    dwell_total_s double precision,        -- sum of n * mean over those windows
    PRIMARY KEY (hour, site, device)
);
CREATE TABLE hourly_cells (
    hour timestamptz NOT NULL,
    site text NOT NULL,
    device text NOT NULL,
    attribute text NOT NULL,               -- gender, age, expression, ethnicity
    cell text NOT NULL,
    visitors bigint,                       -- null: hidden in every window of the hour
    PRIMARY KEY (hour, site, device, attribute, cell)
);

CREATE TABLE devices (
    device text PRIMARY KEY,
    site text,
    status text,                 -- online | offline (the device's retained status / Last Will)
    status_at timestamptz,
    health jsonb,                -- the device's last health message
    health_at timestamptz,
    last_window_end timestamptz,
    last_seen timestamptz NOT NULL
);
"""

_FUNCTIONS = """
CREATE FUNCTION fleet_min_cell() RETURNS integer LANGUAGE sql STABLE AS
$$ SELECT coalesce((SELECT (value #>> '{}')::integer FROM fleet_settings WHERE key = 'min_cell'), 5) $$;

-- Adds two sums of published values; null only while both are (nothing was published).
CREATE FUNCTION fleet_add(a bigint, b bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a ELSE a + b END $$;
CREATE FUNCTION fleet_add(a double precision, b double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a ELSE a + b END $$;

-- A summed count under the minimum-cell rule: null when 1..k-1.
CREATE FUNCTION fleet_cell(total bigint, k integer) RETURNS bigint LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN total BETWEEN 1 AND k - 1 THEN NULL ELSE total END $$;

-- Summed breakdown cells (published values only; a cell null everywhere is null) with total n:
-- the same primary and complementary suppression as the device (edge.aggregator.suppressed_cells),
-- counting what the devices already hid (n minus the published cells) as hidden.
CREATE FUNCTION fleet_suppress(cells jsonb, n bigint, k integer) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    result jsonb := cells;
    hidden bigint;
    pick record;
BEGIN
    IF cells IS NULL OR n IS NULL OR n = 0 THEN
        RETURN cells;
    END IF;
    IF n < k THEN
        RETURN (SELECT jsonb_object_agg(key, NULL) FROM jsonb_each(cells));
    END IF;
    hidden := n - (SELECT coalesce(sum(value::bigint), 0) FROM jsonb_each_text(cells) WHERE value IS NOT NULL);
    FOR pick IN SELECT key, value::bigint AS v FROM jsonb_each_text(cells)
                WHERE value IS NOT NULL AND value::bigint BETWEEN 1 AND k - 1 LOOP
        result := jsonb_set(result, ARRAY[pick.key], 'null'::jsonb);
        hidden := hidden + pick.v;
    END LOOP;
    WHILE hidden > 0 AND hidden < k LOOP
        SELECT key, value::bigint AS v INTO pick FROM jsonb_each_text(result)
        WHERE value IS NOT NULL AND value::bigint > 0 ORDER BY value::bigint, key LIMIT 1;
        EXIT WHEN NOT FOUND;
        result := jsonb_set(result, ARRAY[pick.key], 'null'::jsonb);
        hidden := hidden + pick.v;
    END LOOP;
    RETURN result;
END $$;
"""


def _visitor_view(name: str, period: str, by_device: bool, attention: bool = False) -> str:
    """A visitors view; with ``attention`` (migration 4) its attention columns are added at the end,
    so ``CREATE OR REPLACE`` keeps the view, its grants and what reads it."""
    device_col = "device" if by_device else "NULL::text AS device"
    group = "1, site, device" if by_device else "1, site"
    return f"""
CREATE {"OR REPLACE " if attention else ""}VIEW {name} AS
SELECT date_trunc('{period}', hour, 'UTC') AS period_start,
       site, {device_col},
       sum(windows) AS windows,
       sum(windows_partial) AS windows_partial,
       sum(windows_suppressed) AS windows_suppressed,
       sum(observed_s) AS observed_s,
       fleet_cell(sum(visitors)::bigint, fleet_min_cell()) AS visitors,
       fleet_cell(sum(dwell_n)::bigint, fleet_min_cell()) AS dwell_n,
       CASE WHEN fleet_cell(sum(dwell_mean_n)::bigint, fleet_min_cell()) > 0
            THEN sum(dwell_total_s) / sum(dwell_mean_n) END AS dwell_mean_s{_ATTENTION_COLUMNS if attention else ""}
FROM hourly
GROUP BY {group};
"""


# Viewers are a part of the ended visitors (dwell_n): a row shows them only where the viewers, the
# visitors of the same windows who did not look (viewers_n - viewers, which viewer_rate gives away)
# and the row's dwell_n minus its viewers are each 0 or >= min_cell. Attention seconds go with them.
_ATTENTION_COLUMNS = """,
       sum(windows_attention) AS windows_attention,
       sum(windows_viewers_suppressed) AS windows_viewers_suppressed,
       CASE WHEN fleet_viewers_shown(sum(viewers)::bigint, sum(viewers_n)::bigint, sum(dwell_n)::bigint)
            THEN sum(viewers)::bigint END AS viewers,
       CASE WHEN fleet_viewers_shown(sum(viewers)::bigint, sum(viewers_n)::bigint, sum(dwell_n)::bigint)
            AND sum(viewers_n) > 0 THEN sum(viewers)::double precision / sum(viewers_n) END AS viewer_rate,
       CASE WHEN fleet_viewers_shown(sum(viewers)::bigint, sum(viewers_n)::bigint, sum(dwell_n)::bigint)
            THEN sum(attention_s) END AS attention_s"""

_ATTENTION = """
-- What each window measured of attention (schema 3 with attention on; false for schema 2). The
-- previous release refused schema 3, so every row stored before this migration is false and null.
ALTER TABLE windows
    ADD COLUMN attention boolean NOT NULL DEFAULT false,
    ADD COLUMN viewers integer,                 -- null: 1..k-1 viewers or non-viewers, or not measured
    ADD COLUMN viewer_rate double precision,
    ADD COLUMN attention_sum_s double precision,
    ADD COLUMN attention_median_s double precision;

-- Sums over the windows that published viewers (null while none did).
ALTER TABLE hourly
    ADD COLUMN windows_attention integer NOT NULL DEFAULT 0,          -- windows that measured attention
    ADD COLUMN windows_viewers_suppressed integer NOT NULL DEFAULT 0, -- of those, windows with viewers null
    ADD COLUMN viewers bigint,
    ADD COLUMN viewers_n bigint,                  -- ended visitors (dwell_n) of the windows that published viewers
    ADD COLUMN attention_s double precision;      -- their attention_s.sum

-- Whether summed viewers may be shown beside the summed dwell_n: the viewers, the non-viewers of
-- the same windows and dwell_n minus the viewers each 0 or >= min_cell (edge.viewers, after summing).
CREATE FUNCTION fleet_viewers_shown(viewers bigint, viewers_n bigint, dwell_n bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
SELECT viewers IS NOT NULL
       AND fleet_cell(viewers, fleet_min_cell()) IS NOT NULL
       AND fleet_cell(viewers_n - viewers, fleet_min_cell()) IS NOT NULL
       AND fleet_cell(coalesce(dwell_n, 0) - viewers, fleet_min_cell()) IS NOT NULL
$$;
"""


_MIX_FUNCTION = """
-- Gender, age, expression (and opt-in ethnicity) mix of ended visitors in the hours that start in
-- [t_from, t_to), per site (device null) or per site and device, under the minimum-cell rule after
-- summing.
CREATE FUNCTION fleet_mix(t_from timestamptz, t_to timestamptz, per_device boolean DEFAULT false)
RETURNS TABLE (site text, device text, attribute text, cell text, visitors bigint, n bigint)
LANGUAGE sql STABLE AS $$
WITH totals AS (
    SELECT h.site, CASE WHEN per_device THEN h.device END AS device, sum(h.dwell_n)::bigint AS n
    FROM hourly h
    WHERE h.hour >= t_from AND h.hour < t_to AND h.dwell_n IS NOT NULL
    GROUP BY 1, 2
),
cells AS (
    SELECT c.site, CASE WHEN per_device THEN c.device END AS device, c.attribute, c.cell,
           sum(c.visitors)::bigint AS total
    FROM hourly_cells c
    WHERE c.hour >= t_from AND c.hour < t_to
    GROUP BY 1, 2, 3, 4
),
summed AS (
    SELECT cells.site, cells.device, cells.attribute, t.n,
           fleet_suppress(jsonb_object_agg(cells.cell, cells.total), t.n, fleet_min_cell()) AS shown
    FROM cells JOIN totals t ON t.site = cells.site AND t.device IS NOT DISTINCT FROM cells.device
    GROUP BY 1, 2, 3, 4
)
SELECT s.site, s.device, s.attribute, e.key, (e.value #>> '{}')::bigint, fleet_cell(s.n, fleet_min_cell())
FROM summed s CROSS JOIN LATERAL jsonb_each(s.shown) AS e
$$;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "windows, hourly roll-ups, rejected messages, devices, settings", _TABLES),
    Migration(
        2,
        "minimum-cell functions; visitors per hour and day per site and device; mix over a period",
        _FUNCTIONS
        + _visitor_view("visitors_hourly", "hour", by_device=True)
        + _visitor_view("visitors_daily", "day", by_device=True)
        + _visitor_view("visitors_hourly_site", "hour", by_device=False)
        + _visitor_view("visitors_daily_site", "day", by_device=False)
        + _MIX_FUNCTION,
    ),
    Migration(
        3,
        "a device is seen at its own times: last_seen may be unknown (a retained status replayed on subscribe)",
        "ALTER TABLE devices ALTER COLUMN last_seen DROP NOT NULL;",
    ),
    Migration(
        4,
        "attention (schema 3 windows): viewers and attention seconds in windows, hourly and the visitors views",
        _ATTENTION
        + _visitor_view("visitors_hourly", "hour", by_device=True, attention=True)
        + _visitor_view("visitors_daily", "day", by_device=True, attention=True)
        + _visitor_view("visitors_hourly_site", "hour", by_device=False, attention=True)
        + _visitor_view("visitors_daily_site", "day", by_device=False, attention=True),
    ),
    Migration(
        5,
        "people (schema 4 windows): people, their splits and crossings in windows and hourly; the people views",
        PEOPLE
        + people_view("people_hourly", "hour", by_device=True)
        + people_view("people_daily", "day", by_device=True)
        + people_view("people_hourly_site", "hour", by_device=False)
        + people_view("people_daily_site", "day", by_device=False),
    ),
)

LATEST = MIGRATIONS[-1].version


def migrate(conn: psycopg.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Bring the database to the latest version; returns the versions applied now (empty: none due)."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS fleet_schema ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT max(version) FROM fleet_schema").fetchone()
        current = (row[0] if row else None) or 0
        known = migrations[-1].version if migrations else 0
        if current > known:
            raise SchemaError(
                f"the database is at schema version {current}, newer than this collector knows ({known}); "
                "upgrade the collector"
            )
        for m in migrations:
            if m.version <= current:
                continue
            log.info("database: applying migration %d (%s)", m.version, m.description)
            conn.execute(m.sql)  # our own constant SQL, several statements in one call
            conn.execute("INSERT INTO fleet_schema (version, description) VALUES (%s, %s)", (m.version, m.description))
            applied.append(m.version)
    return applied


def set_min_cell(conn: psycopg.Connection, k: int) -> None:
    """Record the fleet's minimum cell size, which every view applies after summing."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO fleet_settings (key, value) VALUES ('min_cell', to_jsonb(%s::integer))"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (k,),
        )
