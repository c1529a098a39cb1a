"""The MQTT sink's delivery bookkeeping on its own: no broker, no threads, times passed in.

The broker tests (test_mqtt_sink.py, faults/test_link_faults.py) show the rules hold on a real
link; these pin each rule down, including the orderings a real link produces only by chance."""

from __future__ import annotations

from edge.sinks.mqtt_delivery import Delivery, DeliveryTiming

TIMING = DeliveryTiming(max_inflight=3, refused_retry_s=60.0, echo_timeout_s=30.0)


def connected(read_back: bool = False) -> Delivery:
    d = Delivery(TIMING, read_back=read_back)
    d.link_up()
    return d


def send(d: Delivery, *seqs: int, now: float = 0.0) -> None:
    """Send windows the way the drain does: only as many as ``room`` allows, mid = 100 + seq."""
    assert d.room(now) >= len(seqs)
    for seq in seqs:
        assert seq not in d.outstanding()
        d.sent(100 + seq, seq)


def test_nothing_goes_out_while_disconnected_and_in_flight_is_bounded() -> None:
    d = Delivery(TIMING, read_back=False)
    assert d.room(0.0) == 0
    d.link_up()
    assert d.room(0.0) == 3
    send(d, 1, 2)
    assert d.room(0.0) == 1 and d.in_flight == 2 and d.outstanding() == {1, 2}
    send(d, 3)
    assert d.room(0.0) == 0
    assert d.acked(101, 1.0) == 1
    assert d.room(1.0) == 1 and d.outstanding() == {2, 3}


def test_an_ack_for_something_else_is_not_a_window() -> None:
    d = connected()
    send(d, 1)
    assert d.acked(7, 0.0) is None  # status, discovery or health
    assert d.rejected(8) is None
    assert d.in_flight == 1


def test_after_a_reconnect_nothing_new_goes_before_paho_resends_are_acknowledged() -> None:
    d = connected()
    send(d, 1, 2)
    d.link_down()
    assert d.room(0.0) == 0
    d.link_up()
    assert d.room(0.0) == 0  # 1 and 2 are re-sent by paho first
    assert d.acked(101, 1.0) == 1
    assert d.room(1.0) == 0  # 2 still out from the old connection
    assert d.acked(102, 1.0) == 2
    assert d.room(1.0) == 3


def test_a_refused_window_holds_the_rest_and_is_offered_alone_when_due() -> None:
    d = connected()
    send(d, 1, 2, 3)
    assert d.rejected(101) == 1
    assert d.refuse(1, "Not authorized (reason code 135)", now=10.0, wall=1000.0)
    assert d.refused == 1
    held = d.refused_window
    assert held is not None and (held.seq, held.since) == (1, 1000.0)
    # 2 and 3 were already out: the broker refuses them too, and they do not replace the older hold.
    assert d.rejected(102) == 2 and not d.refuse(2, "again", now=10.0, wall=1001.0)
    assert d.rejected(103) == 3 and not d.refuse(3, "again", now=10.0, wall=1001.0)
    assert d.refused == 3 and d.refused_window == held
    assert d.room(10.0) == 0 and d.room(69.9) == 0  # not before refused_retry_s
    assert d.room(70.0) == 1  # the oldest alone
    d.sent(201, 1)
    assert d.room(70.0) == 0  # nothing else while it is out
    assert d.acked(201, 71.0) == 1
    assert d.accepted(1, lambda: 2) == held  # the broker takes it now: the hold ends
    assert d.refused_window is None and d.room(71.0) == 3


def test_a_new_connection_offers_the_refused_window_at_once() -> None:
    d = connected()
    send(d, 1)
    assert d.rejected(101) == 1 and d.refuse(1, "quota", now=0.0, wall=0.0)
    assert d.room(1.0) == 0
    d.link_down()
    d.link_up()
    assert d.room(1.0) == 1


def test_a_later_window_delivered_ends_the_hold_only_once_the_refused_one_left_the_spool() -> None:
    d = connected()
    send(d, 1, 2)
    assert d.rejected(101) == 1 and d.refuse(1, "quota", now=0.0, wall=0.0)
    assert d.acked(102, 0.0) == 2  # it was out before the refusal
    assert d.accepted(2, lambda: 1) is None  # seq 1 still spooled: still held
    assert d.refused_window is not None
    assert d.accepted(2, lambda: 3) is not None  # seq 1 evicted from the spool meanwhile
    assert d.refused_window is None


def test_accepted_asks_the_spool_only_when_a_later_window_got_through() -> None:
    d = connected()

    def never() -> int | None:
        raise AssertionError("the spool was asked")

    assert d.accepted(1, never) is None  # nothing held
    send(d, 1)
    assert d.rejected(101) == 1 and d.refuse(1, "quota", now=0.0, wall=0.0)
    assert d.accepted(1, never) is not None  # the held window itself


def test_read_back_delivers_on_the_echo_not_the_ack() -> None:
    d = connected(read_back=True)
    send(d, 1)
    assert d.acked(101, 5.0) is None  # acknowledged; must come back first
    assert d.in_flight == 1 and d.outstanding() == {1}
    assert not d.echoed(99)  # not ours in flight
    assert d.echoed(1)
    assert d.in_flight == 0


def test_an_echo_that_overtakes_its_ack_delivers_on_the_ack() -> None:
    d = connected(read_back=True)
    send(d, 1)
    assert not d.echoed(1)
    assert d.acked(101, 5.0) == 1
    assert d.in_flight == 0


def test_an_echo_that_does_not_come_back_in_time_is_overdue() -> None:
    d = connected(read_back=True)
    send(d, 1, 2)
    d.acked(101, 0.0)
    d.acked(102, 10.0)
    assert d.overdue(29.9) == []
    assert d.overdue(30.0) == [1]
    assert d.overdue(40.0) == [2]
    assert d.in_flight == 0 and d.overdue(100.0) == []


def test_a_lost_link_forgets_awaited_echoes_so_those_windows_go_again() -> None:
    d = connected(read_back=True)
    send(d, 1)
    d.acked(101, 0.0)
    d.link_down()
    d.link_up()
    assert d.outstanding() == set() and d.room(1.0) == 3


def test_read_back_denied_trusts_acknowledgements_from_then_on() -> None:
    d = connected(read_back=True)
    send(d, 1, 2)
    d.acked(101, 0.0)
    assert d.read_back_denied() == [1]
    assert d.acked(102, 0.0) == 2
    assert d.overdue(1000.0) == []
