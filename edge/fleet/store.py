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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

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
        dwell_mean double precision, dwell_p50 double precision, dwell_p90 double precision, attention boolean,
        viewers integer, viewer_rate double precision, attention_sum_s double precision,
        attention_median_s double precision, people_counted boolean, people integer, people_with_face integer,
        passers_by integer, stayers integer, crossing_line boolean, crossings_in integer, crossings_out integer,
        payload text, topic text)
),
new AS (
    INSERT INTO windows (device, stream, seq, site, window_start, window_end, partial, observed_s, visitors,
                         faces_peak, dwell_n, dwell_mean, dwell_p50, dwell_p90, attention, viewers, viewer_rate,
                         attention_sum_s, attention_median_s, people_counted, people, people_with_face, passers_by,
                         stayers, crossing_line, crossings_in, crossings_out, payload, topic, collector)
    SELECT device, stream, seq, site, window_start, window_end, partial, observed_s, visitors, faces_peak,
           dwell_n, dwell_mean, dwell_p50, dwell_p90, attention, viewers, viewer_rate, attention_sum_s,
           attention_median_s, people_counted, people, people_with_face, passers_by, stayers, crossing_line,
           crossings_in, crossings_out, payload::jsonb, topic, %(collector)s
    FROM batch
    ON CONFLICT (device, stream, seq) DO NOTHING
    RETURNING device, site, window_start, partial, observed_s, visitors, dwell_n, dwell_mean, attention, viewers,
              attention_sum_s, people_counted, people, people_with_face, passers_by, stayers, crossing_line,
              crossings_in, crossings_out, payload
),
hours AS (
    INSERT INTO hourly AS h (hour, site, device, windows, windows_partial, windows_suppressed, observed_s,
                             visitors, dwell_n, dwell_mean_n, dwell_total_s, windows_attention,
                             windows_viewers_suppressed, viewers, viewers_n, attention_s, windows_people,
                             windows_people_suppressed, people, people_with_face, people_face_n, passers_by, stayers,
                             windows_line, crossings_in, crossings_out)
    SELECT date_trunc('hour', window_start, 'UTC'), site, device, count(*), count(*) FILTER (WHERE partial),
           count(*) FILTER (WHERE visitors IS NULL), sum(observed_s), sum(visitors), sum(dwell_n),
           sum(dwell_n) FILTER (WHERE dwell_mean IS NOT NULL),
           sum(dwell_n * dwell_mean) FILTER (WHERE dwell_mean IS NOT NULL),
           count(*) FILTER (WHERE attention), count(*) FILTER (WHERE attention AND viewers IS NULL),
           sum(viewers), sum(dwell_n) FILTER (WHERE viewers IS NOT NULL),
           sum(attention_sum_s) FILTER (WHERE viewers IS NOT NULL),
           count(*) FILTER (WHERE people_counted), count(*) FILTER (WHERE people_counted AND people IS NULL),
           sum(people), sum(people_with_face), sum(people) FILTER (WHERE people_with_face IS NOT NULL),
           sum(passers_by), sum(stayers), count(*) FILTER (WHERE crossing_line), sum(crossings_in), sum(crossings_out)
    FROM new GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (hour, site, device) DO UPDATE SET
        windows = h.windows + excluded.windows,
        windows_partial = h.windows_partial + excluded.windows_partial,
        windows_suppressed = h.windows_suppressed + excluded.windows_suppressed,
        observed_s = h.observed_s + excluded.observed_s,
        visitors = fleet_add(h.visitors, excluded.visitors),
        dwell_n = fleet_add(h.dwell_n, excluded.dwell_n),
        dwell_mean_n = fleet_add(h.dwell_mean_n, excluded.dwell_mean_n),
        dwell_total_s = fleet_add(h.dwell_total_s, excluded.dwell_total_s),
        windows_attention = h.windows_attention + excluded.windows_attention,
        windows_viewers_suppressed = h.windows_viewers_suppressed + excluded.windows_viewers_suppressed,
        viewers = fleet_add(h.viewers, excluded.viewers),
        viewers_n = fleet_add(h.viewers_n, excluded.viewers_n),
        attention_s = fleet_add(h.attention_s, excluded.attention_s),
        windows_people = h.windows_people + excluded.windows_people,
        windows_people_suppressed = h.windows_people_suppressed + excluded.windows_people_suppressed,
        people = fleet_add(h.people, excluded.people),
        people_with_face = fleet_add(h.people_with_face, excluded.people_with_face),
        people_face_n = fleet_add(h.people_face_n, excluded.people_face_n),
        passers_by = fleet_add(h.passers_by, excluded.passers_by),
        stayers = fleet_add(h.stayers, excluded.stayers),
        windows_line = h.windows_line + excluded.windows_line,
        crossings_in = fleet_add(h.crossings_in, excluded.crossings_in),
        crossings_out = fleet_add(h.crossings_out, excluded.crossings_out)
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

# A device is seen when it says so: at its window's end and its health's own time (never later than
# now: a device clock ahead must not keep it "seen" for ever), or now for a status heard live. A
# retained status replayed on subscribe changes the status and nothing of when it was seen.
_SEEN_WINDOW = """
INSERT INTO devices AS d (device, site, last_window_end, last_seen) VALUES (%s, %s, %s, least(%s, now()))
ON CONFLICT (device) DO UPDATE SET site = excluded.site,
    last_seen = greatest(d.last_seen, excluded.last_seen),
    last_window_end = greatest(d.last_window_end, excluded.last_window_end)
"""

_STATUS = """
INSERT INTO devices AS d (device, status, status_at, last_seen)
VALUES (%(device)s, %(status)s, CASE WHEN %(live)s THEN now() END, CASE WHEN %(live)s THEN now() END)
ON CONFLICT (device) DO UPDATE SET status = excluded.status,
    status_at = coalesce(excluded.status_at, d.status_at),
    last_seen = greatest(d.last_seen, excluded.last_seen)
"""

_HEALTH = """
INSERT INTO devices AS d (device, health, health_at, last_seen)
VALUES (%(device)s, %(health)s::jsonb, least(%(at)s, now()), least(%(at)s, now()))
ON CONFLICT (device) DO UPDATE SET health = excluded.health, health_at = excluded.health_at,
    last_seen = greatest(d.last_seen, excluded.last_seen)
"""


# What of a rejected message is kept: enough to see what a device sent, never its whole bulk.
_KEPT_TOPIC = 1024
_KEPT_REASON = 1024
_KEPT_PAYLOAD = 16 * 1024
# SQLSTATE classes that are about the connection or the server, not about a message: connection
# exception, insufficient resources, operator intervention (shutdown), system error.
_CONNECTION_CLASSES = ("08", "53", "57", "58")
_T = TypeVar("_T", WindowRow, DeviceStatus)


def connection_lost(exc: psycopg.Error) -> bool:
    """Whether an error means "the database is down" (keep the batch, retry) rather than "this
    message cannot be stored" (reject it). psycopg reports some of the latter as
    ``OperationalError`` too (an index row over its size limit: ``ProgramLimitExceeded``), so the
    SQLSTATE decides; an error without one never reached the server."""
    if isinstance(exc, psycopg.InterfaceError):
        return True
    state = exc.sqlstate
    if state is None:  # raised here, not by the server: a lost connection, or a value psycopg cannot send
        return isinstance(exc, psycopg.OperationalError)
    return state[:2] in _CONNECTION_CLASSES


def _status_row(st: DeviceStatus) -> dict[str, Any]:
    return {"device": st.device, "status": st.status, "live": st.live}


def _health_row(st: DeviceStatus) -> dict[str, Any]:
    return {"device": st.device, "health": st.health, "at": st.at}


def _text(value: str, most: int) -> str:
    """A text column's value from a hostile one: NUL and lone surrogates (which PostgreSQL refuses)
    replaced, cut to ``most`` characters."""
    return value[:most].replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


@dataclass(frozen=True)
class BatchResult:
    stored: int  # new windows
    duplicates: int  # windows already in the table
    rejected: int
    statuses: int
    refused: tuple[Rejected, ...] = ()  # what the database refused of the batch (also in ``rejected``)


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
                    "device": w.window.device,
                    "stream": w.window.stream,
                    "seq": w.window.seq,
                    "site": w.window.site,
                    "window_start": w.start.isoformat(),
                    "window_end": w.end.isoformat(),
                    "partial": w.window.span.partial,
                    "observed_s": w.window.observed_s,
                    "visitors": w.window.visitors,
                    "faces_peak": w.window.faces.peak,
                    "dwell_n": w.window.dwell.n,
                    "dwell_mean": w.window.dwell.mean,
                    "dwell_p50": w.window.dwell.p50,
                    "dwell_p90": w.window.dwell.p90,
                    **WindowStore._attention(w),
                    **WindowStore._people(w),
                    "payload": w.payload,
                    "topic": w.topic,
                }
                for w in windows
            ]
        )

    @staticmethod
    def _attention(w: WindowRow) -> dict[str, Any]:
        """The window's attention columns: all null (and ``attention`` false) where it measured none."""
        a = w.window.attention
        if a is None:
            return {"attention": False}
        return {
            "attention": True,
            "viewers": a.viewers,
            "viewer_rate": a.rate,
            "attention_sum_s": a.seconds_sum,
            "attention_median_s": a.seconds_median,
        }

    @staticmethod
    def _people(w: WindowRow) -> dict[str, Any]:
        """The window's people columns: all null (flags false) where it counted none; crossings null
        (``crossing_line`` false) where it has no counting line. Zones stay in the payload."""
        p = w.window.people
        if p is None:
            return {"people_counted": False, "crossing_line": False}
        return {
            "people_counted": True,
            "people": p.n,
            "people_with_face": p.with_face,
            "passers_by": p.passers_by,
            "stayers": p.stayers,
            "crossing_line": p.crossings is not None,
            "crossings_in": p.crossings[0] if p.crossings is not None else None,
            "crossings_out": p.crossings[1] if p.crossings is not None else None,
        }

    def _insert(self, cur: psycopg.Cursor[Any], windows: Sequence[WindowRow]) -> int:
        row = cur.execute(_STORE_WINDOWS, {"rows": self._json(windows), "collector": self._collector}).fetchone()
        return int(row[0]) if row else 0

    def write(
        self, windows: Sequence[WindowRow], rejected: Sequence[Rejected], statuses: Sequence[DeviceStatus]
    ) -> BatchResult:
        """Store one batch in one transaction; raises ``psycopg.Error`` with nothing stored when
        the connection is the trouble (``connection_lost``).

        A message the database refuses (a value or a size it cannot hold: whatever error class
        carries it) must not block the stream: it would be redelivered and refused for ever. Then
        the batch is written again message by message, and the refused ones go to ``rejected``
        with the database's reason.
        """
        try:
            return self._write(windows, rejected, statuses, one_by_one=False)
        except psycopg.Error as exc:
            if connection_lost(exc):
                raise
            log.warning("the database refused a message of a batch (%s); storing it one by one", _first_line(exc))
            return self._write(windows, rejected, statuses, one_by_one=True)

    def _one_by_one(self, items: Sequence[_T], write: Callable[[_T], object], refused: list[Rejected]) -> list[_T]:
        """``write`` each item in a savepoint; the ones the database refuses become ``refused``."""
        kept: list[_T] = []
        for item in items:
            try:
                with self._conn.transaction():  # a savepoint
                    write(item)
                kept.append(item)
            except psycopg.Error as exc:
                if connection_lost(exc):
                    raise
                reason = f"refused by the database: {_first_line(exc)}"
                payload = item.payload if isinstance(item.payload, bytes) else item.payload.encode()
                refused.append(Rejected(item.topic, reason, payload, "database"))
        return kept

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
                counts: list[int] = []
                windows = self._one_by_one(windows, lambda w: counts.append(self._insert(cur, [w])), refused)
                stored = sum(counts)
            if windows:
                latest: dict[str, WindowRow] = {}
                for w in windows:
                    device = w.window.device
                    if device not in latest or w.end > latest[device].end:
                        latest[device] = w
                cur.executemany(_SEEN_WINDOW, [(w.window.device, w.window.site, w.end, w.end) for w in latest.values()])
            # Only each device's latest status and health in the batch matter (an upsert per device,
            # not per message: 10,000 devices send a health message every 30 s).
            latest_status = {st.device: st for st in statuses if st.status is not None}
            latest_health = {st.device: st for st in statuses if st.health is not None}
            if one_by_one:
                status, health = list(latest_status.values()), list(latest_health.values())
                self._one_by_one(status, lambda st: cur.execute(_STATUS, _status_row(st)), refused)
                self._one_by_one(health, lambda st: cur.execute(_HEALTH, _health_row(st)), refused)
            else:
                if latest_status:
                    cur.executemany(_STATUS, [_status_row(st) for st in latest_status.values()])
                if latest_health:
                    cur.executemany(_HEALTH, [_health_row(st) for st in latest_health.values()])
            if rejected or refused:
                cur.executemany(
                    "INSERT INTO rejected (topic, reason, payload, collector) VALUES (%s, %s, %s, %s)",
                    [
                        (
                            _text(r.topic, _KEPT_TOPIC),
                            _text(r.reason, _KEPT_REASON),
                            r.payload[:_KEPT_PAYLOAD],
                            self._collector,
                        )
                        for r in [*rejected, *refused]
                    ],
                )
        return BatchResult(stored, len(windows) - stored, len(rejected) + len(refused), len(statuses), tuple(refused))

    def close(self) -> None:
        self._conn.close()
