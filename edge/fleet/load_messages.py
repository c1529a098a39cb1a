"""What the load test's simulated devices publish (``edge.fleet.loadtest``): a window as a device
with attention and people counting on publishes it (schema 4, a counting line and two zones, some
values suppressed), and a device's health message."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from edge.sinks.base import dumps


def window_message(device: str, stream: str, seq: int, end: datetime, window_s: int) -> str:
    """Window ``seq`` of ``device``, ending at ``end``; its site holds 20 devices. People as
    ``edge.people_cells`` publishes them at k = 5: 14 people, 8 with a face, 9 passers-by and 5
    stayers, 7 crossings in and 2 out (hidden), a zone with a peak of 5 and one with 3 (hidden)."""
    start = end - timedelta(seconds=window_s)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    hidden = {"female": None, "male": None, "unknown": 0}
    return dumps(
        {
            "schema": 4,
            "device": device,
            "site": f"site{int(device[3:]) // 20:04d}",
            "stream": stream,
            "seq": seq,
            "window": {"start": start.strftime(iso), "end": end.strftime(iso), "partial": False},
            "observed_s": float(window_s),
            "visitors": 6,
            "today": {"date": end.strftime("%Y-%m-%d"), "visitors": 6 * seq},
            "faces": {"peak": 5, "mean": 1.4},
            "dwell_s": {"n": 10, "mean": 14.5, "p50": 12.0, "p90": 30.0},
            "people": 14,
            "people_with_face": 8,
            "passers_by": 9,
            "stayers": 5,
            "crossings": {"in": 7, "out": None},
            "zones": {"entrance": {"peak": 5, "mean": 1.8}, "till": {"peak": None, "mean": None}},
            "viewers": 5,  # attention as edge.viewers publishes it: 5 of the 10 ended visitors looked
            "viewer_rate": 0.5,
            "attention_s": {"sum": 21.4, "median": 3.9},
            "viewers_by": {"gender": hidden, "age": {"18-24": 0, "25-34": 5, "35-44": 0, "unknown": 0}},
            "gender": hidden,
            "age": {"18-24": 0, "25-34": 10, "35-44": 0, "unknown": 0},
            "expression": {"neutral": 10, "happy": 0, "unknown": 0},
            "suppressed": [
                *("crossings.out", "zones.till.peak", "zones.till.mean"),
                *("gender.female", "gender.male", "viewers_by.gender.female", "viewers_by.gender.male"),
            ],
        }
    )


def health_message(device: str, n: int) -> str:
    """A device health message (edge/schemas/health.schema.json) as the MQTT sink publishes it."""
    return dumps(
        {
            "schema": 1,
            "device": device,
            "ts": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fps": 9.8,
            "processed_frames": 300 * n,
            "detector_ms": 61.0,
            "tracker_ms": 0.2,
            "attributes_ms": 18.0,
            "dropped_frames": 0,
            "uptime_s": 30.0 * n,
            "windows": n // 2,
            "held_windows": 0,
            "version": "0.1.0",
            "cpu_temp_c": 51.2,
            "throttled": None,
            "spool": {"depth": 0, "oldest_age_s": None, "evicted": 0, "max_windows": 10080},
            "mqtt": {"connected": True, "in_flight": 0, "refused": 0, "refused_window": None},
        }
    )
