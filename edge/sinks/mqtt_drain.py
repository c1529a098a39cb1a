"""The MQTT sink's drain thread: the one thread that publishes windows and acknowledges them.

Paho's callbacks run on its network thread, and ``on_publish`` runs while paho holds its own
message mutex, so a callback that took one of our locks could deadlock against a thread that is
publishing. The callbacks therefore only post events here; this thread alone owns the delivery
bookkeeping (``edge.sinks.mqtt_delivery``), sends pending windows from the spool in ``seq`` order
and removes them from the spool once the broker has confirmed them. That keeps the lock order
trivial and every delivery decision on one thread.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as mqtt

from edge.sinks import mqtt_diagnostics as say
from edge.sinks.base import dumps
from edge.sinks.mqtt_delivery import Delivery
from edge.state_store import StateStore

log = logging.getLogger("edge.sinks.mqtt")  # one logger for the sink, as its log lines always named it

_RETRY_S = 5.0  # with no event, run the drain this often: a transient failure is retried, a refused window offered


class Drain:
    """Events in (``post``), windows out. ``announce`` is called with each window's payload just
    before it is published (the sink announces breakdown cells it has not announced yet)."""

    def __init__(
        self,
        *,
        client: mqtt.Client,
        spool: StateStore,
        delivery: Delivery,
        device_id: str,
        counts_topic: str,
        qos: int,
        where: str,
        announce: Callable[[Mapping[str, Any]], None],
    ) -> None:
        self._client = client
        self.spool = spool
        self.delivery = delivery
        self._device_id = device_id
        self._topic = counts_topic
        self._qos = qos
        self._where = where
        self._announce = announce
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._idle_cv = threading.Condition()
        self._idle = spool.depth() == 0
        self.in_flight = 0  # windows sent and not yet confirmed, as of the last pass
        self._thread = threading.Thread(target=self._main, name=f"mqtt-drain-{device_id}", daemon=True)

    # ----------------------------------------------------------------- other threads

    def start(self) -> None:
        self._thread.start()

    def post(self, *event: Any) -> None:
        """From paho's callbacks: ``connected``, ``disconnected``, ``ack`` (mid, reason code),
        ``echo`` (a payload read back), ``echo_denied`` (reason)."""
        self._events.put(event)

    def kick(self) -> None:
        """A window was spooled: send it, and count as busy until it is confirmed."""
        with self._idle_cv:  # both under the lock, so the drain cannot mark idle in between
            self._idle = False
            self._events.put(("kick",))

    def wait_idle(self, timeout: float) -> bool:
        """Block until every spooled window is confirmed (spool empty, nothing in flight)."""
        with self._idle_cv:
            return self._idle_cv.wait_for(lambda: self._idle, timeout)

    def stop(self, timeout: float) -> None:
        self._events.put(("stop",))
        self._thread.join(timeout=timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ----------------------------------------------------------------- the drain thread

    def _main(self) -> None:
        d = self.delivery
        while True:
            try:
                batch = [self._events.get(timeout=_RETRY_S)]
            except queue.Empty:
                batch = []
            while True:
                try:
                    batch.append(self._events.get_nowait())
                except queue.Empty:
                    break
            try:
                for event in batch:
                    if event[0] == "stop":
                        return
                    self._handle(event)
                for seq in d.overdue(time.monotonic()):
                    self._refuse(seq, say.not_read_back(d.echo_timeout_s, self._topic))
                self._send_pending()
                idle = d.in_flight == 0 and self.spool.depth() == 0
            except Exception:  # noqa: BLE001 - the thread must survive (e.g. a transient SQLite error)
                log.exception("MQTT drain failed; will retry on the next event")
                idle = False
            self.in_flight = d.in_flight
            with self._idle_cv:
                if idle and self._events.empty():
                    self._idle = True
                    self._idle_cv.notify_all()

    def _handle(self, event: tuple[Any, ...]) -> None:
        d = self.delivery
        kind = event[0]
        if kind == "connected":
            d.link_up()
        elif kind == "disconnected":
            d.link_down()
        elif kind == "ack":
            mid, reason_code = event[1], event[2]
            if reason_code.is_failure:
                seq = d.rejected(mid)
                if seq is not None:
                    self._refuse(seq, say.publish_refused(reason_code))
            else:
                seq = d.acked(mid, time.monotonic())
                if seq is not None:
                    self._delivered(seq)
        elif kind == "echo":
            seq = self._own_seq(event[1])
            if seq is not None and d.echoed(seq):
                self._delivered(seq)
        elif kind == "echo_denied":
            log.warning(say.read_back_denied(self._topic, event[1]))
            for seq in d.read_back_denied():
                self._delivered(seq)

    def _own_seq(self, raw: bytes) -> int | None:
        """The seq of a window of this device read back, or None for anything else."""
        try:
            payload = json.loads(raw)
            seq = payload["seq"] if payload.get("device") == self._device_id else None
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        return seq if isinstance(seq, int) else None

    def _refuse(self, seq: int, reason: str) -> None:
        """Keep a refused window; it is offered again, alone, later (fixing the broker needs no restart)."""
        retry_s = self.delivery.refused_retry_s
        if self.delivery.refuse(seq, reason, time.monotonic(), time.time()):
            log.error(say.window_refused(self._where, seq, self._topic, reason, retry_s))
        else:
            log.debug("window seq %d refused again: %s", seq, reason)

    def _delivered(self, seq: int) -> None:
        self.spool.ack(seq)
        released = self.delivery.accepted(seq, self._oldest_pending)
        if released is not None:
            log.warning(say.window_accepted(self._where, seq, time.time() - released.since))

    def _oldest_pending(self) -> int | None:
        oldest = self.spool.pending(limit=1)
        return oldest[0][0] if oldest else None

    def _send_pending(self) -> None:
        d = self.delivery
        room = d.room(time.monotonic())
        if room <= 0:
            return
        sent = d.outstanding()
        for seq, payload in self.spool.pending(limit=room + len(sent)):
            if seq in sent:
                continue
            if room <= 0:
                break
            self._announce(payload)
            info = self._client.publish(self._topic, dumps(payload), qos=self._qos, retain=False)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("could not queue window seq %d: %s; will retry", seq, mqtt.error_string(info.rc))
                return
            # MQTT_ERR_NO_CONN: paho keeps the message and sends it on reconnect; track it like the others.
            d.sent(info.mid, seq)
            room -= 1
