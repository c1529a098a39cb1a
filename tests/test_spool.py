"""Spool and SeqStore on real SQLite files: durability (reopen and SIGKILL), order, bound, counters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from edge.spool import SeqStore, Spool

REPO = Path(__file__).resolve().parents[1]


def window(seq: int, device: str = "cam1") -> dict[str, Any]:
    return {
        "schema": 1,
        "device": device,
        "site": "shop",
        "seq": seq,
        "window": {"start": "2026-11-23T12:00:00Z", "end": "2026-11-23T12:01:00Z", "partial": False},
        "visitors": seq % 7,
        "gender": {"female": 5, "male": None},
        "suppressed": ["gender.male"],
    }


def test_put_pending_ack_in_seq_order(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_windows=100) as spool:
        for seq in (5, 2, 9, 7):
            assert spool.put(window(seq)) == seq
        assert [s for s, _ in spool.pending(10)] == [2, 5, 7, 9]
        assert [s for s, _ in spool.pending(2)] == [2, 5]
        assert spool.pending(1)[0][1] == window(2)  # round-trips the payload exactly
        assert spool.ack(5) is True
        assert spool.ack(5) is False  # already gone: a duplicate PUBACK is harmless
        assert [s for s, _ in spool.pending(10)] == [2, 7, 9]
        assert spool.depth() == 3


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "spool.sqlite3"  # parent folder is created
    with Spool(path, max_windows=10) as spool:
        for seq in range(1, 4):
            spool.put(window(seq))
        spool.ack(1)
    with Spool(path, max_windows=10) as spool:
        assert spool.pending(10) == [(2, window(2)), (3, window(3))]


def test_put_is_durable_when_the_process_is_killed(tmp_path: Path) -> None:
    """put() returns only after COMMIT: a SIGKILL right after loses nothing (and no seq is reused)."""
    path = tmp_path / "spool.sqlite3"
    script = textwrap.dedent(f"""
        import sys
        from edge.spool import SeqStore, Spool
        spool, seqs = Spool({str(path)!r}, 100), SeqStore({str(path)!r})
        for _ in range(3):
            spool.put({{"seq": seqs.next(), "visitors": 1}})
        print("stored", flush=True)
        sys.stdin.read()  # wait to be killed
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "stored"
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -9
    with Spool(path, 100) as spool, SeqStore(path) as seqs:
        assert [s for s, _ in spool.pending(10)] == [1, 2, 3]
        assert seqs.next() == 4


def test_eviction_drops_oldest_and_counts_persistently(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path, max_windows=3) as spool:
        for seq in range(1, 6):
            spool.put(window(seq))
        assert [s for s, _ in spool.pending(10)] == [3, 4, 5]
        assert spool.evicted == 2
        assert spool.depth() == 3
    with Spool(path, max_windows=3) as spool:
        assert spool.evicted == 2
        spool.put(window(6))
        assert spool.evicted == 3
    # A lower bound on reopen applies at once.
    with Spool(path, max_windows=1) as spool:
        assert [s for s, _ in spool.pending(10)] == [6]
        assert spool.evicted == 5
        assert spool.stats()["evicted"] == 5


def test_oldest_age_and_stats(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_windows=10) as spool:
        assert spool.oldest_age_s() is None
        assert spool.stats() == {"depth": 0, "oldest_age_s": None, "evicted": 0, "max_windows": 10}
        spool.put(window(1))
        (stored_at,) = spool._conn.execute("SELECT stored_at FROM windows").fetchone()
        assert spool.oldest_age_s(now=stored_at + 42.0) == pytest.approx(42.0)
        assert spool.oldest_age_s(now=stored_at - 5) == 0.0  # clock stepped back: never negative
        assert spool.stats(now=stored_at + 1.26)["oldest_age_s"] == pytest.approx(1.3)


def test_rejects_payload_without_integer_seq(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_windows=10) as spool:
        for bad in ({"visitors": 1}, {"seq": "3"}, {"seq": True}):
            with pytest.raises(ValueError, match="seq"):
                spool.put(bad)
        with pytest.raises(ValueError):
            Spool(tmp_path / "t.db", max_windows=0)


def test_concurrent_puts_and_acks(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_windows=1000) as spool:

        def writer(base: int) -> None:
            for i in range(50):
                spool.put(window(base + i))
                if i % 2:
                    spool.ack(base + i)

        threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert [s for s, _ in spool.pending(1000)] == sorted(k * 1000 + i for k in range(4) for i in range(0, 50, 2))


def test_seq_store_increases_across_restarts_and_shares_the_spool_file(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with SeqStore(path) as seqs, Spool(path, 10) as spool:
        assert seqs.peek() == 1
        assert [seqs.next() for _ in range(3)] == [1, 2, 3]
        spool.put(window(3))
    with SeqStore(path, start=100) as seqs:  # `start` applies only to a new store
        assert seqs.peek() == 4
        assert seqs.next() == 4
    with SeqStore(tmp_path / "fresh.sqlite3", start=100) as seqs:
        assert seqs.next() == 100
    with Spool(path, 10) as spool:
        assert spool.depth() == 1


def test_stream_id_is_created_with_the_state_and_kept(tmp_path: Path) -> None:
    with SeqStore(tmp_path / "a.sqlite3") as a:
        stream = a.stream
    assert str(uuid.UUID(stream)) == stream
    with SeqStore(tmp_path / "a.sqlite3") as again:
        assert again.stream == stream and again.next() == 1
    with SeqStore(tmp_path / "lost-and-recreated.sqlite3") as fresh:
        assert fresh.stream != stream and fresh.next() == 1  # seq 1 again, but under a new key


def test_the_days_total_adds_published_visitors_restarts_each_day_and_survives_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with SeqStore(path) as store:
        assert store.number("2026-11-30T10:00:00Z", "2026-11-30", 7) == (1, 7)
        assert store.number("2026-11-30T10:01:00Z", "2026-11-30", None) == (2, 7)  # suppressed: adds nothing
    with SeqStore(path) as store:
        assert store.number("2026-11-30T10:02:00Z", "2026-11-30", 5) == (3, 12)
        assert store.number("2026-11-30T23:00:00Z", "2026-12-01", 2) == (4, 2)  # local midnight passed


def test_numbering_a_window_drops_its_checkpoint_in_the_same_transaction(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with SeqStore(path) as store:
        assert store.checkpoint() is None
        open_window = {"window": {"start": "2026-11-30T12:01:00Z"}, "visitors": 3, "seq": None}
        store.save_checkpoint(open_window)
        assert store.next("2026-11-30T12:00:00Z") == 1  # an earlier window: the checkpoint stays
    with SeqStore(path) as store:  # a restart after an unclean stop still finds it
        assert store.checkpoint() == open_window
        assert store.next("2026-11-30T12:01:00Z") == 2
        assert store.checkpoint() is None
