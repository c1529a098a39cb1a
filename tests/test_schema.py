"""The published JSON Schemas match what the code produces and what docs/payload.md documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from payload_schema import SCHEMAS, check, validator

from edge.aggregator import AggregationConfig, Aggregator
from edge.attention import AttentionConfig
from edge.attributes import AttributesConfig
from edge.records import Attributes
from edge.sinks import build_health, pi_health
from edge.state_store import StateStore
from edge.tracker import TrackerUpdate, VisitorEnded, VisitorStarted

REPO = Path(__file__).resolve().parent.parent
NOON = 1_764_504_000.0  # 2025-11-30T12:00:00Z


PAYLOAD_DOC = REPO / "docs" / "payload.md"


def documented_keys(heading: str) -> list[str]:
    text = PAYLOAD_DOC.read_text()
    section = text[text.index(heading) :]
    table = section[section.index("| key | meaning |") :].split("\n\n", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\| `([a-z_0-9]+)` \|", table, re.MULTILINE)]


def test_the_docs_document_every_key_of_the_window_schema_in_order() -> None:
    schema = json.loads((SCHEMAS / "window.schema.json").read_text())
    assert documented_keys("# Window payload") == list(schema["properties"])


def test_the_documented_example_is_a_valid_window() -> None:
    text = PAYLOAD_DOC.read_text()
    section = text[text.index("# Window payload") :]
    example = section[section.index("```json") + len("```json") : section.index("```", section.index("```json") + 7)]
    check("window", json.loads(example))


@pytest.mark.parametrize("min_cell", [1, 5])
@pytest.mark.parametrize("ethnicity", [False, True])
def test_aggregator_windows_match_the_schema(min_cell: int, ethnicity: bool, tmp_path: Path) -> None:
    config = AggregationConfig(window_s=60, min_cell=min_cell)
    a = Aggregator(config, AttributesConfig(ethnicity=ethnicity), AttentionConfig(), "lobby-1", "hq")
    store = StateStore(tmp_path / "state.sqlite3", 100)
    people = [Attributes(age=30.0 + i, gender="female" if i % 3 else "male", expression="happy") for i in range(7)]
    a.observe(TrackerUpdate(new_visitors=tuple(VisitorStarted(p) for p in people), active=7), NOON + 1)
    a.observe(TrackerUpdate(ended=tuple(VisitorEnded(5.0 + i, p) for i, p in enumerate(people)), active=2), NOON + 2)
    windows = a.tick(NOON + 200)  # the busy window and two empty ones
    windows.append(a.close(NOON + 201))
    assert len(windows) == 4
    for w in windows:
        with pytest.raises(AssertionError, match="today"):
            check("window", w.to_payload())  # the state store numbers a window and adds the day's running total
        check("window", store.finish(w).to_payload())
    snapshot = Aggregator(config, AttributesConfig(ethnicity=ethnicity), AttentionConfig(), "lobby-1", "hq")
    snapshot.observe(TrackerUpdate(active=1), NOON)
    saved = snapshot.snapshot()
    assert saved is not None and saved.seq is None  # a checkpoint is numbered when it is published
    check("window", store.finish(saved).to_payload())
    store.close()


def test_a_window_with_an_unknown_key_or_a_missing_one_is_refused(tmp_path: Path) -> None:
    a = Aggregator(AggregationConfig(window_s=60), AttributesConfig(), AttentionConfig(), "lobby-1", "hq")
    a.observe(TrackerUpdate(), NOON)
    (w,) = a.tick(NOON + 61)
    with StateStore(tmp_path / "state.sqlite3", 100) as store:
        payload = store.finish(w).to_payload()
    check("window", payload)
    with pytest.raises(AssertionError, match="track_id"):
        check("window", dict(payload, track_id=3))
    with pytest.raises(AssertionError, match="stream"):
        check("window", {k: v for k, v in payload.items() if k != "stream"})


def test_health_messages_match_the_schema(tmp_path: Path) -> None:
    fields = {
        "fps": 14.9,
        "processed_frames": 1000,
        "detector_ms": 41.0,
        "tracker_ms": 0.1,
        "attributes_ms": 3.2,
        "dropped_frames": 4,
        "uptime_s": 66.0,
        "windows": 1,
        "held_windows": 0,
        "version": "0.1.0",
        **pi_health(None),
    }
    check("health", build_health(fields, device_id="lobby-1"))
    check("health", build_health(dict(fields, storage="failed", held_windows=3), device_id="lobby-1"))
    with StateStore(tmp_path / "spool.sqlite3", 10) as spool:
        msg = build_health(fields, device_id="lobby-1", spool=spool)
    msg["mqtt"] = {"connected": True, "in_flight": 0, "refused": 0, "refused_window": None}
    check("health", msg)
    held = {"seq": 7, "reason": "Not authorized (reason code 135)", "since": "2026-11-30T12:00:00Z"}
    check("health", dict(msg, mqtt=dict(msg["mqtt"], refused=3, refused_window=held)))
    assert validator("health").is_valid(msg)
