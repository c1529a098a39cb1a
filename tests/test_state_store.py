"""The state store on real SQLite files: one transaction per finished window, the spool's order,
bound and counters, durability (reopen and SIGKILL), continuity checks that start a new stream
(a lost WAL, a restored copy, a missing mark, a clock behind), day totals that are never lowered,
a corrupt file moved aside, the old two-file layout taken over, and memory when writes fail."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from filesystems import failing_ext4, fill, tmpfs

from edge.state_store import StateStore, StorageError
from edge.window import DayTotal, Dwell, Faces, Span, Window

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Day totals follow the device's local date: pin it to UTC here."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def window(minute: int, visitors: int | None = 1, day: str = "2026-11-30", hour: int = 12) -> Window:
    """A finished window as the aggregator hands it over (not numbered)."""
    return Window(
        device="cam1",
        site="shop",
        span=Span(f"{day}T{hour:02d}:{minute:02d}:00Z", f"{day}T{hour:02d}:{minute:02d}:59Z", False),
        observed_s=60.0,
        visitors=visitors,
        faces=Faces(0, 0.0),
        dwell=Dwell(0, None, None, None),
        breakdowns={},
        suppressed=(),
    )


def store(path: Path, n: int = 100) -> StateStore:
    return StateStore(path / "state.sqlite3", max_windows=n)


def test_finish_numbers_spools_and_totals_in_one_step(tmp_path: Path) -> None:
    with store(tmp_path) as s:
        first = s.finish(window(0, 3))
        second = s.finish(window(1, None))  # withheld: adds nothing to the day
        assert (first.seq, second.seq) == (1, 2)
        assert first.stream == second.stream == s.stream and str(uuid.UUID(s.stream)) == s.stream
        assert first.today == second.today == DayTotal("2026-11-30", 3)
        keys = list(first.to_payload())
        assert keys[keys.index("visitors") + 1] == "today"  # read beside visitors
        assert [seq for seq, _ in s.pending(10)] == [1, 2] and s.pending(1)[0][1] == first.to_payload()
        s.put(first)  # a sink's put of a spooled window changes nothing
        assert s.depth() == 2 and s.ack(1) is True and s.ack(1) is False  # a duplicate PUBACK is harmless
        assert [seq for seq, _ in s.pending(10)] == [2]
    with store(tmp_path) as s:
        assert [seq for seq, _ in s.pending(10)] == [2]
        assert s.finish(window(2, 4)).seq == 3 and s.today("2026-11-30") == 7


def kill_after_finishing(tmp_path: Path, minutes: int) -> None:
    """A daemon-like process finishes windows, then dies by SIGKILL (its WAL not checkpointed)."""
    script = textwrap.dedent(f"""
        from edge.state_store import StateStore
        from edge.window import Dwell, Faces, Span, Window
        s = StateStore({str(tmp_path / "state.sqlite3")!r}, 100)
        s._conn.execute("PRAGMA wal_autocheckpoint=0")
        for minute in range({minutes}):
            span = Span(f"2026-11-30T12:{{minute:02d}}:00Z", "x", False)
            s.finish(Window("cam1", "shop", span, 60.0, 1, Faces(0, 0.0), Dwell(0, None, None, None), {{}}, ()))
        print("stored", flush=True)
        input()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "stored"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_window_finished_before_a_sigkill_is_spooled_and_numbered(tmp_path: Path) -> None:
    """finish() returns after COMMIT: a SIGKILL right after loses nothing, and no seq is reused."""
    kill_after_finishing(tmp_path, 3)
    with store(tmp_path) as s:
        assert [seq for seq, _ in s.pending(10)] == [1, 2, 3] and s.today("2026-11-30") == 3
        assert s.finish(window(3)).seq == 4


def test_eviction_drops_oldest_and_counts_persistently(tmp_path: Path) -> None:
    with store(tmp_path, 3) as s:
        for minute in range(5):
            s.finish(window(minute))
        assert [seq for seq, _ in s.pending(10)] == [3, 4, 5] and s.evicted == 2
    with store(tmp_path, 1) as s:  # a lower bound applies at once
        assert [seq for seq, _ in s.pending(10)] == [5] and s.evicted == 4
        assert s.stats() | {"oldest_age_s": None} == {
            "depth": 1,
            "oldest_age_s": None,
            "evicted": 4,
            "max_windows": 1,
        }


def test_oldest_age_and_bad_input(tmp_path: Path) -> None:
    with store(tmp_path, 10) as s:
        assert s.oldest_age_s() is None
        s.finish(window(0))
        (stored_at,) = s._conn.execute("SELECT stored_at FROM spool").fetchone()
        assert s.oldest_age_s(now=stored_at + 42.0) == pytest.approx(42.0)
        assert s.oldest_age_s(now=stored_at - 5) == 0.0  # clock stepped back: never negative
        for bad in (None, "3", True):
            with pytest.raises(ValueError, match="seq"):
                s.put(dataclasses.replace(window(0), seq=bad))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        StateStore(tmp_path / "t.sqlite3", max_windows=0)


def test_concurrent_finish_and_acks(tmp_path: Path) -> None:
    with store(tmp_path, 1000) as s:
        taken: list[int] = []

        def worker(hour: int) -> None:
            for minute in range(25):
                seq = s.finish(window(minute, hour=hour)).seq
                taken.append(seq)
                if minute % 2:
                    s.ack(seq)

        threads = [threading.Thread(target=worker, args=(h,)) for h in (10, 11, 12, 13)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(taken) == list(range(1, 101))


def test_numbering_drops_the_checkpoint_of_that_window_in_the_same_transaction(tmp_path: Path) -> None:
    with store(tmp_path) as s:
        assert s.checkpoint() is None
        open_window = window(1, 3)
        s.save_checkpoint(open_window)
        s.finish(window(0))  # an earlier window: the checkpoint stays
    with store(tmp_path) as s:  # a restart after an unclean stop still finds it
        assert s.checkpoint() == open_window
        s.finish(window(1))
        assert s.checkpoint() is None


def test_day_totals_restart_each_day_and_a_clock_behind_never_lowers_them(tmp_path: Path) -> None:
    with store(tmp_path) as s:
        s.finish(window(58, 4, hour=23, day="2026-11-29"))
        s.finish(window(59, 1, hour=23, day="2026-11-29"))
        first = s.stream
        assert s.finish(window(0, 2, hour=0)).today == DayTotal("2026-11-30", 2)
    with store(tmp_path) as s:  # restarted with the clock behind (before time sync)
        late = s.finish(window(59, 3, hour=23, day="2026-11-29"))
        # The window overlaps what the stream stored: a new stream, stated; the old day gets the
        # visitors, the new day's total is left alone.
        assert late.stream != first and late.seq == 4
        assert late.today == DayTotal("2026-11-29", 8)
        assert s.finish(window(0, 1, hour=0)).today == DayTotal("2026-11-30", 3)
        assert s.finish(window(1, 1, hour=0)).stream == late.stream  # only once


def test_a_restart_within_a_window_keeps_the_stream(tmp_path: Path) -> None:
    """A window closed early at a stop and the rest of it after the restart: two partial windows
    with one start, one stream (as before)."""
    with store(tmp_path) as s:
        first = s.finish(window(0))
    with store(tmp_path) as s:
        again = s.finish(window(0))
        assert again.stream == first.stream and again.seq == 2


def test_a_lost_wal_starts_a_new_stream_and_never_reuses_a_seq(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with store(tmp_path) as s:
        before = s.finish(window(0))  # checkpointed into the main file when it closes
    kill_after_finishing(tmp_path, 6)
    (tmp_path / "state.sqlite3-wal").unlink()  # what cp *.sqlite3 or a card dropping writes does
    with store(tmp_path) as s:
        after = s.finish(window(30))
    assert after.stream != before.stream and after.seq == 8  # seqs 2-7 went out before
    assert "cannot be trusted to continue stream" in caplog.text and "lost writes" in caplog.text
    assert "new stream" in caplog.text


def test_a_restored_copy_or_a_lost_mark_starts_a_new_stream(tmp_path: Path) -> None:
    with store(tmp_path) as s:
        s.finish(window(0))
        stream = s.stream
    backup = tmp_path / "backup.sqlite3"
    shutil.copy(tmp_path / "state.sqlite3", backup)
    with store(tmp_path) as s:
        for minute in (1, 2):
            s.finish(window(minute))
    shutil.copy(backup, tmp_path / "state.sqlite3")  # restored: seq 2 would come again
    with store(tmp_path) as s:
        restored = s.finish(window(3))
        assert restored.stream != stream and restored.seq == 4
    (tmp_path / "state.mark").unlink()
    with store(tmp_path) as s:
        assert s.finish(window(4)).stream != restored.stream
    # A state file lost while its mark stays: a new file, and numbering continues above the mark.
    (tmp_path / "state.sqlite3").unlink()
    with store(tmp_path) as s:
        assert s.finish(window(5)).seq == 6


def test_a_corrupt_state_file_is_moved_aside_and_counting_continues(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with store(tmp_path) as s:
        s.finish(window(0))
    (tmp_path / "state.sqlite3").write_bytes(b"not a database, after a bad shutdown" * 100)
    with store(tmp_path) as s:
        assert s.finish(window(1)).seq == 2  # above the mark: nothing reused
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert aside and aside[0] in caplog.text and "moved aside" in caplog.text


def test_the_two_file_layout_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """State directories of earlier releases: seq.sqlite3 (numbering, day, checkpoint) and
    spool.sqlite3 (unsent windows keyed by seq)."""
    seq_file = sqlite3.connect(tmp_path / "seq.sqlite3", isolation_level=None)
    seq_file.execute("PRAGMA journal_mode=WAL")
    seq_file.execute("CREATE TABLE seq_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    seq_file.execute("CREATE TABLE text_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    seq_file.execute("INSERT INTO seq_state VALUES ('next', 42)")
    old_stream = str(uuid.uuid4())
    seq_file.execute("INSERT INTO text_state VALUES ('stream', ?)", (old_stream,))
    seq_file.execute("INSERT INTO text_state VALUES ('day', ?)", (json.dumps({"date": "2026-11-30", "visitors": 9}),))
    seq_file.execute("INSERT INTO text_state VALUES ('checkpoint', ?)", (json.dumps(window(45, 2).to_payload()),))
    seq_file.close()
    spool = sqlite3.connect(tmp_path / "spool.sqlite3", isolation_level=None)
    spool.execute("CREATE TABLE windows (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL, stored_at REAL NOT NULL)")
    for seq in (40, 41):
        spool.execute(
            "INSERT INTO windows VALUES (?, ?, ?)", (seq, json.dumps({"seq": seq, "stream": old_stream}), 1.0)
        )
    spool.close()
    with store(tmp_path) as s:
        assert s.stream == old_stream and [seq for seq, _ in s.pending(10)] == [40, 41]
        assert s.checkpoint() == window(45, 2)
        numbered = s.finish(window(45, 1))
        assert (numbered.seq, numbered.stream, numbered.today) == (42, old_stream, DayTotal("2026-11-30", 10))
    assert "unsent window(s)" in caplog.text
    assert sorted(p.name for p in tmp_path.glob("*.migrated")) == ["seq.sqlite3.migrated", "spool.sqlite3.migrated"]


def test_a_state_file_system_turned_read_only_keeps_windows_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with failing_ext4(tmp_path / "card") as (card, fail), store(card) as s:
        first = s.finish(window(0, 2))
        fail()  # the kernel remounts the card read-only
        second = s.finish(window(1, 3))
        # Numbered under a new stream in memory, with the unsent window carried over; said once.
        assert s.failure is not None and "cannot be written" in s.failure
        assert second.stream != first.stream and second.seq == 2
        assert second.today == DayTotal("2026-11-30", 5)
        assert [seq for seq, _ in s.pending(10)] == [1, 2] and s.ack(1) and s.ack(2)
        third = s.finish(window(2, 1))
        assert third.stream == second.stream and third.seq == 3
        s.save_checkpoint(window(3))  # in memory too, without an error
        assert caplog.text.count("cannot be written") == 1


def test_a_full_disk_at_start_counts_in_memory(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "size=4m") as disk:
        with store(disk) as s:
            s.finish(window(0))
        fill(disk)
        with store(disk) as s:
            numbered = s.finish(window(1))
            assert s.failure is not None and numbered.seq == 2
            assert [seq for seq, _ in s.pending(10)] == [1, 2]  # the unsent window is still delivered


def test_a_folder_the_user_cannot_write_is_refused(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    with pytest.raises(StorageError, match="not writable"):
        store(folder)
