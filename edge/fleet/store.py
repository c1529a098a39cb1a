"""Writes parsed messages to PostgreSQL, one transaction per batch.

The collector acknowledges a batch's messages only after ``write`` returns, so
everything here must be all-or-nothing: a failure rolls the whole batch back
and the broker redelivers it. Windows are keyed by ``(device, stream, seq)``
and inserted with ``ON CONFLICT DO NOTHING``: a redelivered window (a collector
killed between commit and PUBACK, a device re-sending after a lost PUBACK) is
counted as a duplicate and stored once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from edge.fleet.messages import DeviceStatus, Rejected, WindowRow

log = logging.getLogger(__name__)

# One statement per batch: insert the windows (a duplicate key is skipped), and add exactly the new
# ones to the hourly roll-ups, in key order (two collectors of a share group lock rows in one order).
_STORE_WINDOWS = """
WITH batch AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
        device text, stream uuid, seq bigint, site text, window_start timestamptz, window_end timestamptz,
        partial boolean, observed_s double precision, visitors integer, faces_peak integer, dwell_n integer,
        dwell_mean double precision, dwell_p50 double precision, dwell_p90 double precision, payload text,
        topic text)
),
new AS (
    INSERT INTO windows (device, stream, seq, site, window_start, window_end, partial, observed_s, visitors,
                         faces_peak, dwell_n, dwell_mean, dwell_p50, dwell_p90, payload, topic, collector)
    SELECT device, stream, seq, site, window_start, window_end, partial, observed_s, visitors, faces_peak,
           dwell_n, dwell_mean, dwell_p50, dwell_p90, payload::jsonb, topic, %(collector)s
    FROM batch
    ON CONFLICT (device, stream, seq) DO NOTHING
    RETURNING device, site, window_start, partial, observed_s, visitors, dwell_n, dwell_mean, payload
),
hours AS (
    INSERT INTO hourly AS h (hour, site, device, windows, windows_partial, windows_suppressed, observed_s,
                             visitors, dwell_n, dwell_mean_n, dwell_total_s)
    SELECT date_trunc('hour', window_start, 'UTC'), site, device, count(*), count(*) FILTER (WHERE partial),
           count(*) FILTER (WHERE visitors IS NULL), sum(observed_s), sum(visitors), sum(dwell_n),
           sum(dwell_n) FILTER (WHERE dwell_mean IS NOT NULL),
           sum(dwell_n * dwell_mean) FILTER (WHERE dwell_mean IS NOT NULL)
    FROM new GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (hour, site, device) DO UPDATE SET
        windows = h.windows + excluded.windows,
        windows_partial = h.windows_partial + excluded.windows_partial,
        windows_suppressed = h.windows_suppressed + excluded.windows_suppressed,
        observed_s = h.observed_s + excluded.observed_s,
        visitors = fleet_add(h.visitors, excluded.visitors),
        dwell_n = fleet_add(h.dwell_n, excluded.dwell_n),
        dwell_mean_n = fleet_add(h.dwell_mean_n, excluded.dwell_mean_n),
        dwell_total_s = fleet_add(h.dwell_total_s, excluded.dwell_total_s)
),
cells AS (
    INSERT INTO hourly_cells AS c (hour, site, device, attribute, cell, visitors)
    SELECT date_trunc('hour', n.window_start, 'UTC'), n.site, n.device, a.attribute, e.key,
           sum((e.value #>> '{}')::bigint)
    FROM new n
    CROSS JOIN (VALUES ('gender'), ('age'), ('expression'), ('ethnicity')) AS a(attribute)
    CROSS JOIN LATERAL jsonb_each(n.payload -> a.attribute) AS e
    WHERE n.dwell_n IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (hour, site, device, attribute, cell) DO UPDATE SET visitors = fleet_add(c.visitors, excluded.visitors)
)
SELECT count(*) FROM new
"""

_SEEN_WINDOW = """
INSERT INTO devices AS d (device, site, last_window_end, last_seen) VALUES (%s, %s, %s, now())
ON CONFLICT (device) DO UPDATE SET site = excluded.site, last_seen = now(),
    last_window_end = greatest(d.last_window_end, excluded.last_window_end)
"""

_STATUS = """
INSERT INTO devices AS d (device, status, status_at, last_seen) VALUES (%s, %s, now(), now())
ON CONFLICT (device) DO UPDATE SET status = excluded.status, status_at = now(), last_seen = now()
"""

_HEALTH = """
INSERT INTO devices AS d (device, health, health_at, last_seen) VALUES (%s, %s::jsonb, now(), now())
ON CONFLICT (device) DO UPDATE SET health = excluded.health, health_at = now(), last_seen = now()
"""


@dataclass(frozen=True)
class BatchResult:
    stored: int  # new windows
    duplicates: int  # windows already in the table
    rejected: int
    statuses: int


class WindowStore:
    """The collector's one database connection (reconnected by the caller after an error)."""

    def __init__(self, conn: psycopg.Connection, collector: str) -> None:
        self._conn = conn
        self._collector = collector

    @property
    def closed(self) -> bool:
        return self._conn.closed

    @staticmethod
    def _json(windows: Sequence[WindowRow]) -> str:
        """The batch as one JSON array for ``jsonb_to_recordset`` (one round trip per batch)."""
        return json.dumps(
            [
                {
                    "device": w.device,
                    "stream": w.stream,
                    "seq": w.seq,
                    "site": w.site,
                    "window_start": w.start.isoformat(),
                    "window_end": w.end.isoformat(),
                    "partial": w.partial,
                    "observed_s": w.observed_s,
                    "visitors": w.visitors,
                    "faces_peak": w.faces_peak,
                    "dwell_n": w.dwell_n,
                    "dwell_mean": w.dwell_mean,
                    "dwell_p50": w.dwell_p50,
                    "dwell_p90": w.dwell_p90,
                    "payload": w.payload,
                    "topic": w.topic,
                }
                for w in windows
            ]
        )

    def _insert(self, cur: psycopg.Cursor[Any], windows: Sequence[WindowRow]) -> int:
        row = cur.execute(_STORE_WINDOWS, {"rows": self._json(windows), "collector": self._collector}).fetchone()
        return int(row[0]) if row else 0

    def write(
        self, windows: Sequence[WindowRow], rejected: Sequence[Rejected], statuses: Sequence[DeviceStatus]
    ) -> BatchResult:
        """Store one batch in one transaction; raises ``psycopg.Error`` with nothing stored.

        A window the database refuses (a value it cannot hold) must not block the stream: it
        would be redelivered and refused for ever. Then the batch is written again window by
        window, and the refused ones go to ``rejected`` with the database's reason.
        """
        try:
            return self._write(windows, rejected, statuses, one_by_one=False)
        except psycopg.DataError as exc:
            log.warning("the database refused a value in a batch (%s); storing it window by window", exc)
            return self._write(windows, rejected, statuses, one_by_one=True)

    def _write(
        self,
        windows: Sequence[WindowRow],
        rejected: Sequence[Rejected],
        statuses: Sequence[DeviceStatus],
        one_by_one: bool,
    ) -> BatchResult:
        stored = 0
        refused: list[Rejected] = []
        with self._conn.transaction(), self._conn.cursor() as cur:
            if windows and not one_by_one:
                stored = self._insert(cur, windows)
            elif windows:
                kept: list[WindowRow] = []
                for w in windows:
                    try:
                        with self._conn.transaction():  # a savepoint
                            stored += self._insert(cur, [w])
                        kept.append(w)
                    except psycopg.DataError as exc:
                        reason = f"refused by the database: {str(exc).splitlines()[0]}"
                        refused.append(Rejected(w.topic, reason, w.payload.encode()))
                windows = kept
            if windows:
                latest: dict[str, WindowRow] = {}
                for w in windows:
                    if w.device not in latest or w.end > latest[w.device].end:
                        latest[w.device] = w
                cur.executemany(_SEEN_WINDOW, [(w.device, w.site, w.end) for w in latest.values()])
            if rejected or refused:
                cur.executemany(
                    "INSERT INTO rejected (topic, reason, payload, collector) VALUES (%s, %s, %s, %s)",
                    [(r.topic, r.reason, r.payload, self._collector) for r in [*rejected, *refused]],
                )
            # Only each device's latest status and health in the batch matter (an upsert per device,
            # not per message: 10,000 devices send a health message every 30 s).
            latest_status = {st.device: st.status for st in statuses if st.status is not None}
            latest_health = {st.device: st.health for st in statuses if st.health is not None}
            if latest_status:
                cur.executemany(_STATUS, list(latest_status.items()))
            if latest_health:
                cur.executemany(_HEALTH, list(latest_health.items()))
        return BatchResult(stored, len(windows) - stored, len(rejected) + len(refused), len(statuses))

    def close(self) -> None:
        self._conn.close()
