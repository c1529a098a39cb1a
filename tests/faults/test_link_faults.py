"""Faults on the way to the broker, against a real mosquitto: outages, a dead or reset link, a
sink killed while disconnected, a long backlog (and a kill in the middle of draining it), spool
eviction, bad TLS, bad credentials, refused windows (MQTT 5 and 3.1.1), a broker that forgets
everything, a client id taken over, and a network thread that dies.

Each test asserts what a subscriber received (seqs contiguous, or the gap counted) and what the
sink logged. Waits are Conditions with bounded timeouts, never sleeps."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mqtt_broker import Broker, TlsFiles
from mqtt_clients import (
    COUNTS,
    DEVICE,
    WAIT,
    LinkProxy,
    LogWaiter,
    Subscriber,
    mqtt_sink,
    read_line,
    run_helper,
    sigkill,
    window,
)

from edge.secrets import TlsConfig
from edge.state_store import StateStore


def test_broker_outage_spools_then_delivers_everything_in_order(
    broker_factory: Callable[..., Broker], tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    broker = broker_factory(persistence=True)  # keeps the subscriber's session across the restart
    sub = subscribers(broker.port, [COUNTS], client_id="outage-sub", persistent=True)
    spool = StateStore(tmp_path / "spool.db", 100)
    with mqtt_sink(broker.port, spool) as sink:
        assert sink.wait_connected(WAIT)
        for seq in range(1, 4):
            sink.publish_window(window(seq))
        assert sub.wait_seqs([1, 2, 3]) == [1, 2, 3]
        assert sink.wait_idle(WAIT)

        broker.stop()
        for seq in range(4, 10):
            sink.publish_window(window(seq))
        assert spool.depth() == 6  # durable, unacknowledged
        broker.start()

        assert sub.wait_seqs(list(range(1, 10))) == list(range(1, 10))
        assert sink.wait_idle(WAIT)
        assert spool.depth() == 0
    spool.close()


def test_dead_link_loses_in_flight_windows_which_are_resent_in_order(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber], sink_log: LogWaiter
) -> None:
    """Windows sent into a dead link are never acknowledged: after keepalive notices, they and the
    windows spooled meanwhile all arrive, in order. The broker never restarts."""
    sub = subscribers(mqtt_broker.port, [COUNTS])
    proxy = LinkProxy(mqtt_broker.port)
    try:
        with (
            StateStore(tmp_path / "spool.db", 100) as spool,
            mqtt_sink(proxy.port, spool, keepalive=1, max_inflight=4) as sink,
        ):
            assert sink.wait_connected(WAIT)
            for seq in range(1, 4):
                sink.publish_window(window(seq))
            assert sub.wait_seqs([1, 2, 3]) == [1, 2, 3]
            assert sink.wait_idle(WAIT)

            proxy.blackhole()
            for seq in range(4, 7):  # sent into the void: in flight, never acknowledged
                sink.publish_window(window(seq))
            assert sink_log.wait_for("lost connection"), sink_log.lines  # keepalive noticed
            for seq in range(7, 12):  # spooled while disconnected
                sink.publish_window(window(seq))
            assert spool.depth() == 8
            proxy.restore()

            assert sub.wait_seqs(list(range(1, 12))) == list(range(1, 12))
            assert sink.wait_idle(WAIT)
            assert spool.depth() == 0
    finally:
        proxy.stop()


def test_sigkilled_sink_leaves_spool_that_a_new_sink_drains(
    broker_factory: Callable[..., Broker], tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    broker = broker_factory(start=False)
    spool_path = tmp_path / "spool.db"
    proc = run_helper(tmp_path, "spool", spool_path, broker.port, 5)
    try:
        assert read_line(proc) == "spooled"
    finally:
        sigkill(proc)
    with StateStore(spool_path, 100) as spool:
        assert [s for s, _ in spool.pending(10)] == [1, 2, 3, 4, 5]

        broker.start()
        sub = subscribers(broker.port, [COUNTS])
        with mqtt_sink(broker.port, spool) as sink:
            assert sub.wait_seqs([1, 2, 3, 4, 5]) == [1, 2, 3, 4, 5]
            assert sink.wait_idle(WAIT)
        assert spool.depth() == 0


def test_tls_with_right_and_wrong_ca(
    broker_factory: Callable[..., Broker],
    tls_files: TlsFiles,
    tmp_path: Path,
    subscribers: Callable[..., Subscriber],
    sink_log: LogWaiter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = broker_factory(tls=tls_files)
    assert broker.tls_port is not None
    sub = subscribers(broker.port, [COUNTS])  # plain listener on the same broker

    with (
        StateStore(tmp_path / "ok.db", 10) as spool,
        mqtt_sink(broker.tls_port, spool, tls=TlsConfig(ca_file=tls_files.ca)) as sink,
    ):
        assert sink.wait_connected(WAIT)
        sink.publish_window(window(1))
        assert sub.wait_seqs([1]) == [1]

    caplog.set_level(logging.INFO, logger="edge.sinks")
    with (
        StateStore(tmp_path / "bad.db", 10) as spool,
        mqtt_sink(broker.tls_port, spool, "cam2", tls=TlsConfig(ca_file=tls_files.wrong_ca)) as sink,
    ):
        lines = sink_log.wait_for("certificate rejected")
        assert lines, sink_log.lines
        assert not sink.connected
    assert "certificate verify failed" in lines[0] and str(tls_files.wrong_ca) in lines[0]
    assert any("certificate rejected" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_refused_password_is_logged_per_attempt_and_retried(
    broker_factory: Callable[..., Broker], tmp_path: Path, sink_log: LogWaiter, caplog: pytest.LogCaptureFixture
) -> None:
    broker = broker_factory(users={"edge": "s3cret-right"})
    wrong, right = tmp_path / "wrong", tmp_path / "right"
    wrong.write_text("s3cret-wrong\n")
    right.write_text("s3cret-right\n")
    caplog.set_level(logging.INFO, logger="edge.sinks")
    with StateStore(tmp_path / "spool.db", 10) as spool:
        for protocol in ("5", "3.1.1"):
            before = len(sink_log.lines)
            with mqtt_sink(
                broker.port,
                spool,
                username="edge",
                password_file=wrong,
                protocol=protocol,
                reconnect_min_s=0.05,
                reconnect_max_s=0.2,
            ) as sink:
                refused = sink_log.wait_for("refused the connection", count=2, since=before)
                assert len(refused) >= 2, sink_log.lines
                assert sink.connect_attempts >= 2
                assert not sink.connected
                sink.publish_window(window(1))  # still accepted (spooled) while refused
            assert re.search(r"(Not authorized|Bad user name or password) \(reason code 13[45]\)", refused[0])
            assert "check the MQTT user name ('edge') and password" in refused[0]
        with mqtt_sink(broker.port, spool, username="edge", password_file=right) as sink:
            assert sink.wait_connected(WAIT)
            assert sink.wait_idle(WAIT)
    assert not any("s3cret" in r.getMessage() for r in caplog.records)


def test_full_spool_evicts_oldest_while_broker_is_down(
    broker_factory: Callable[..., Broker], tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    broker = broker_factory(start=False)
    with StateStore(tmp_path / "spool.db", max_windows=3) as spool:
        with mqtt_sink(broker.port, spool) as sink:
            for seq in range(1, 6):
                sink.publish_window(window(seq))
            assert spool.evicted == 2
            assert [s for s, _ in spool.pending(10)] == [3, 4, 5]
        broker.start()
        sub = subscribers(broker.port, [COUNTS])
        with mqtt_sink(broker.port, spool) as sink:
            assert sub.wait_seqs([3, 4, 5]) == [3, 4, 5]
            assert sink.wait_idle(WAIT)


def test_a_reset_link_reconnects_and_loses_nothing(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber], sink_log: LogWaiter
) -> None:
    """A TCP RST (router reboot, NAT flush): logged in words, reconnected, every window once in order."""
    sub = subscribers(mqtt_broker.port, [COUNTS])
    proxy = LinkProxy(mqtt_broker.port)
    try:
        with StateStore(tmp_path / "s.db", 100) as spool, mqtt_sink(proxy.port, spool) as sink:
            assert sink.wait_connected(WAIT)
            for seq in range(1, 4):
                sink.publish_window(window(seq))
            proxy.reset()
            for seq in range(4, 8):
                sink.publish_window(window(seq))
            assert sub.wait_seqs(list(range(1, 8))) == list(range(1, 8))
            assert sink.wait_idle(WAIT)
    finally:
        proxy.stop()
    lost = sink_log.wait_for("lost connection")
    assert lost and "the connection was closed or reset" in lost[0], sink_log.lines
    assert "Unspecified error" not in " ".join(sink_log.lines)


def test_a_broker_restarted_without_persistence_gets_every_window_the_device_held(
    broker_factory: Callable[..., Broker], tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    """The broker forgets sessions and queues; the device still holds what was not acknowledged."""
    broker = broker_factory(persistence=False)
    sub = subscribers(broker.port, [COUNTS])
    proxy = LinkProxy(broker.port)
    try:
        with StateStore(tmp_path / "s.db", 100) as spool, mqtt_sink(proxy.port, spool) as sink:
            assert sink.wait_connected(WAIT)
            for seq in range(1, 4):
                sink.publish_window(window(seq))
            assert sub.wait_seqs([1, 2, 3]) == [1, 2, 3] and sink.wait_idle(WAIT)
            broker.kill()
            proxy.blackhole()  # keep the device away until the consumer is back (it is not persistent)
            for seq in range(4, 7):
                sink.publish_window(window(seq))
            sub.subscribed.clear()
            broker.start()
            assert sub.subscribed.wait(WAIT)
            proxy.restore()
            assert sub.wait_seqs(list(range(1, 7))) == list(range(1, 7))
            assert sink.wait_idle(WAIT) and spool.depth() == 0
    finally:
        proxy.stop()


BACKLOG = 5000


def test_a_long_backlog_drains_in_order_and_a_kill_mid_drain_loses_nothing(
    mqtt_broker: Broker, tmp_path: Path, subscribers: Callable[..., Subscriber]
) -> None:
    """Days offline, then the link returns; the sink is SIGKILLed while it drains; a new one
    finishes: every window arrives, first arrivals in seq order, re-sent ones only duplicated."""
    sub = subscribers(mqtt_broker.port, [COUNTS])
    proxy = LinkProxy(mqtt_broker.port)
    spool_path = tmp_path / "spool.db"
    try:
        proxy.blackhole()  # offline: connections go nowhere
        proc = run_helper(tmp_path, "spool", spool_path, proxy.port, BACKLOG)
        try:
            assert read_line(proc, timeout=120) == "spooled"
            started = time.monotonic()
            proxy.restore()
            assert sub.wait_for(lambda _: len(sub.seqs()) >= BACKLOG // 10, timeout=120)
            rate = len(sub.seqs()) / (time.monotonic() - started)
        finally:
            sigkill(proc)
    finally:
        proxy.stop()
    print(f"backlog drain: {rate:.0f} windows/s before the kill")  # a figure, not a bar
    with StateStore(spool_path, BACKLOG) as spool:
        left = spool.depth()
        assert 0 < left < BACKLOG, "the kill did not land mid-drain"
        with mqtt_sink(mqtt_broker.port, spool) as sink:
            assert sub.wait_seqs(list(range(1, BACKLOG + 1)), timeout=120) == list(range(1, BACKLOG + 1))
            assert sink.wait_idle(WAIT)
        assert spool.depth() == 0


# --------------------------------------------------------------------------- refused windows

DENY_COUNTS = f"""topic readwrite edge/{DEVICE}/status
topic readwrite edge/{DEVICE}/health
topic read edge/{DEVICE}/counts
topic readwrite homeassistant/#
"""
ALLOW_ALL = "topic readwrite #\n"


def refused_then_allowed(
    broker: Broker, spool: StateStore, sub: Subscriber, sink_log: LogWaiter, **kw: object
) -> tuple[list[dict], list[str]]:
    """Three windows into a broker whose ACL denies counts, then the ACL fixed: health while refused."""
    health_topic = f"edge/{DEVICE}/health"
    with mqtt_sink(broker.port, spool, refused_retry_s=0.5, **kw) as sink:
        assert sink.wait_connected(WAIT)
        for seq in range(1, 4):
            sink.publish_window(window(seq))
        refused = sink_log.wait_for("refused window seq 1 ")
        assert refused, sink_log.lines
        assert sink.refused_window is not None and sink.refused_window.seq == 1
        assert spool.depth() == 3  # kept, not dropped
        sink.publish_health({})
        assert sub.wait_for(lambda ms: any(m.topic == health_topic for m in ms))
        broker.set_acl(ALLOW_ALL)  # the operator fixes the broker; the device is not restarted
        assert sub.wait_seqs([1, 2, 3]) == [1, 2, 3]
        assert sink.wait_idle(WAIT) and spool.depth() == 0 and sink.refused_window is None
    health = [json.loads(m.payload) for m in sub.messages if m.topic == health_topic]
    return health, refused


def test_a_window_the_broker_refuses_is_kept_reported_and_sent_once_allowed(
    broker_factory: Callable[..., Broker], tmp_path: Path, subscribers: Callable[..., Subscriber], sink_log: LogWaiter
) -> None:
    broker = broker_factory(acl=DENY_COUNTS)
    sub = subscribers(broker.port, [COUNTS, f"edge/{DEVICE}/health"])
    with StateStore(tmp_path / "spool.db", 100) as spool:
        health, refused = refused_then_allowed(broker, spool, sub, sink_log)
    assert "Not authorized (reason code 135)" in refused[0] and "stays in the spool" in refused[0]
    assert health[0]["mqtt"]["refused_window"]["seq"] == 1
    assert sink_log.wait_for("accepted window seq 1 after refusing it")


def test_over_mqtt_311_a_window_the_acl_drops_is_caught_by_reading_it_back(
    broker_factory: Callable[..., Broker], tmp_path: Path, subscribers: Callable[..., Subscriber], sink_log: LogWaiter
) -> None:
    """MQTT 3.1.1 acknowledges a publish the ACL drops; the window must not come back to be delivered."""
    broker = broker_factory(acl=DENY_COUNTS)
    sub = subscribers(broker.port, [COUNTS, f"edge/{DEVICE}/health"])
    with StateStore(tmp_path / "spool.db", 100) as spool:
        health, refused = refused_then_allowed(broker, spool, sub, sink_log, protocol="3.1.1", echo_timeout_s=1.0)
    assert "acknowledged but not read back within 1 s" in refused[0]
    assert health[0]["mqtt"]["refused_window"]["seq"] == 1


def test_over_mqtt_311_a_write_only_device_is_told_how_to_go_on(
    broker_factory: Callable[..., Broker], tmp_path: Path, subscribers: Callable[..., Subscriber], sink_log: LogWaiter
) -> None:
    """A device that may publish but not read its own topic cannot check delivery over 3.1.1: its
    windows are held with a message saying what to change; read_back: false lets them flow."""
    acl = f"user cam\ntopic write edge/{DEVICE}/#\ntopic readwrite homeassistant/#\nuser reader\ntopic read #\n"
    broker = broker_factory(users={"cam": "pw-cam", "reader": "pw-reader"}, acl=acl)
    sub = subscribers(broker.port, [COUNTS], auth=("reader", "pw-reader"))
    password = tmp_path / "pw"
    password.write_text("pw-cam")
    kw = {"protocol": "3.1.1", "username": "cam", "password_file": password, "echo_timeout_s": 1.0}
    with StateStore(tmp_path / "spool.db", 100) as spool:
        with mqtt_sink(broker.port, spool, **kw) as sink:
            sink.publish_window(window(1))
            held = sink_log.wait_for("refused window seq 1 ")
            assert held and "grant read access or set sink.read_back: false" in held[0], sink_log.lines
            assert spool.depth() == 1
        with mqtt_sink(broker.port, spool, **kw, read_back=False) as sink:
            for seq in range(2, 4):
                sink.publish_window(window(seq))
            assert sub.wait_seqs([1, 2, 3]) == [1, 2, 3]
            assert sink.wait_idle(WAIT) and sink.refused_window is None
    assert sink_log.wait_for("read_back off: a window the broker's ACL drops is acknowledged and lost"), sink_log.lines


# --------------------------------------------------------------------------- words an operator can act on


def test_a_client_id_taken_over_names_the_shared_device_id(
    mqtt_broker: Broker, tmp_path: Path, sink_log: LogWaiter
) -> None:
    with (
        StateStore(tmp_path / "a.db", 10) as spool_a,
        StateStore(tmp_path / "b.db", 10) as spool_b,
        mqtt_sink(mqtt_broker.port, spool_a, reconnect_min_s=5, reconnect_max_s=5) as first,
    ):
        assert first.wait_connected(WAIT)
        with mqtt_sink(mqtt_broker.port, spool_b) as second:
            assert second.wait_connected(WAIT)
            lines = sink_log.wait_for("lost connection")
    # mosquitto 2.0 closes the old connection without a DISCONNECT packet; a broker that sends one
    # (reason 142, session taken over) gets "two devices or two daemons share this device_id".
    assert lines and "with the client id 'cam1': two devices or two daemons sharing a device_id" in lines[0]


def test_tls_against_a_plain_port_and_plain_against_a_tls_port_say_so(
    broker_factory: Callable[..., Broker], tls_files: TlsFiles, tmp_path: Path, sink_log: LogWaiter
) -> None:
    broker = broker_factory(tls=tls_files)
    with StateStore(tmp_path / "spool.db", 10) as spool:
        with mqtt_sink(broker.port, spool, tls=TlsConfig(ca_file=tls_files.ca)):
            lines = sink_log.wait_for("TLS handshake")
        assert lines and f"is port {broker.port} a TLS listener?" in lines[0], sink_log.lines
        with mqtt_sink(broker.tls_port, spool):
            lines = sink_log.wait_for("did not complete the connection")
        assert lines and f"if port {broker.tls_port} is a TLS listener, configure sink.tls" in lines[0], sink_log.lines


def test_a_broker_that_wants_credentials_says_so_when_none_are_set(
    broker_factory: Callable[..., Broker], tmp_path: Path, sink_log: LogWaiter
) -> None:
    broker = broker_factory(users={"edge": "secret"})
    with StateStore(tmp_path / "spool.db", 10) as spool, mqtt_sink(broker.port, spool):
        lines = sink_log.wait_for("refused the connection")
    assert lines and "the broker wants credentials: set sink.username and a password" in lines[0], sink_log.lines
    assert "None" not in lines[0]


@pytest.mark.parametrize(
    ("change", "error"),
    [({"host": "broker..local"}, "UnicodeError"), ({"keepalive": 70000}, "struct.error")],
)
def test_a_dead_network_thread_is_reported_not_hidden(
    mqtt_broker: Broker, tmp_path: Path, sink_log: LogWaiter, change: dict, error: str
) -> None:
    """Values paho cannot encode kill its network thread (config validation refuses them; this
    is the backstop): the sink reports the failure, so the daemon can stop and be restarted."""
    with StateStore(tmp_path / "spool.db", 10) as spool, mqtt_sink(mqtt_broker.port, spool, **change) as sink:
        assert sink_log.wait_for("the MQTT network thread died"), sink_log.lines
        assert sink.failure is not None and error.split(".")[-1] in sink.failure
