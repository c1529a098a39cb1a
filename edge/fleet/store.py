"""Writes parsed messages to PostgreSQL, one transaction per batch.

The collector acknowledges a batch's messages only after ``write`` returns, so
everything here must be all-or-nothing: a failure rolls the whole batch back
and the broker redelivers it. Windows are keyed by ``(device, stream, seq)``
and inserted with ``ON CONFLICT DO NOTHING``: a redelivered window (a collector
killed between commit and PUBACK, a device re-sending after a lost PUBACK) is
counted as a duplicate and stored once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from edge.fleet.messages import DeviceStatus, Rejected, WindowRow

log = logging.getLogger(__name__)

_INSERT_WINDOW = """
INSERT INTO windows (device, stream, seq, site, window_start, window_end, partial, observed_s, visitors,
                     faces_peak, dwell_n, dwell_mean, dwell_p50, dwell_p90, payload, topic, collector)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)
ON CONFLICT (device, stream, seq) DO NOTHING
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

    def _row(self, w: WindowRow) -> tuple[object, ...]:
        return (
            w.device,
            w.stream,
            w.seq,
            w.site,
            w.start,
            w.end,
            w.partial,
            w.observed_s,
            w.visitors,
            w.faces_peak,
            w.dwell_n,
            w.dwell_mean,
            w.dwell_p50,
            w.dwell_p90,
            w.payload,
            w.topic,
            self._collector,
        )

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
                cur.executemany(_INSERT_WINDOW, [self._row(w) for w in windows])
                stored = max(cur.rowcount, 0)
            elif windows:
                for w in windows:
                    try:
                        with self._conn.transaction():  # a savepoint
                            cur.execute(_INSERT_WINDOW, self._row(w))
                            stored += max(cur.rowcount, 0)
                    except psycopg.DataError as exc:
                        reason = f"refused by the database: {str(exc).splitlines()[0]}"
                        refused.append(Rejected(w.topic, reason, w.payload.encode()))
                windows = [w for w in windows if all(r.payload != w.payload.encode() for r in refused)]
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
