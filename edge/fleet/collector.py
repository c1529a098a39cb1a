"""``edge collect``: windows from the broker into PostgreSQL, each exactly once.

How nothing is lost and nothing doubled:

* the MQTT 5 session is persistent (fixed client id, clean start off, a
  session expiry): while the collector is down the broker queues the windows
  for it, and the ones it had received but not acknowledged are redelivered;
* QoS 1 with manual acknowledgement: paho's network thread only queues a
  message; the writer commits a batch in one transaction and only then sends
  the batch's PUBACKs, in the order the messages arrived (as MQTT requires);
* the table's key is the de-duplication key the payload documents, ``(device,
  stream, seq)``, inserted with ``ON CONFLICT DO NOTHING``: a window committed
  but not yet acknowledged when the collector died is stored once when it
  comes again;
* a PUBACK belongs to a connection: messages received on a connection that
  has since dropped are not acknowledged on the new one (the broker sends
  them again, and the key absorbs the copy);
* a database outage stops the acknowledgements, not the collector: the batch
  is retried with back-off, the broker holds back further windows (Receive
  Maximum), and the health message says so.

Several collectors can share the stream with an MQTT 5 shared subscription
(``mqtt.share_group``); each window goes to one of them. Device status and
health are subscribed unshared (each collector sees every device, and retained
messages arrive on subscribe); they are upserts and need no de-duplication.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.fleet.collector_health import Counters, HourlyWarnings, health_message
from edge.fleet.config import FleetConfig
from edge.fleet.messages import (
    DeviceStatus,
    Incoming,
    Rejected,
    WindowRow,
    device_of,
    parse_health,
    parse_status,
    parse_window,
)
from edge.fleet.schema import migrate, set_min_cell
from edge.fleet.store import WindowStore
from edge.secrets import read_password, tls_context

log = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
_DB_RETRY_MAX_S = 30.0


class Collector:
    """One collector process: a paho client feeding a single writer thread (the caller's).

    ``run`` blocks until ``stop`` is set; it then commits and acknowledges what it holds,
    publishes ``offline`` and disconnects.
    """

    def __init__(self, config: FleetConfig, stop: threading.Event) -> None:
        self.config = config
        self.stop = stop
        self.counters = Counters()
        self._queue: queue.Queue[Incoming] = queue.Queue(maxsize=config.batch.queue)
        self._generation = 0
        self._gen_lock = threading.Lock()
        self._subscribed = threading.Event()
        m = config.mqtt
        self._status_topic = m.own_prefix + "status"
        self._health_topic = m.own_prefix + "health"
        self._client = self._make_client()
        self._warnings = HourlyWarnings(log)

    # ------------------------------------------------------------------ MQTT side (paho's thread)

    def _make_client(self) -> mqtt.Client:
        m = self.config.mqtt
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=m.client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        client.enable_logger(logging.getLogger(__name__ + ".paho"))
        if m.username is not None:
            client.username_pw_set(m.username, read_password(m, "mqtt"))
        if m.tls is not None:
            client.tls_set_context(tls_context(m.tls))
        client.will_set(self._status_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(1, int(max(1, m.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            log.error("broker %s:%s refused the collector: %s", self.config.mqtt.host, self.config.mqtt.port, reason)
            return
        with self._gen_lock:
            self._generation += 1
        self.counters.connected = True
        m = self.config.mqtt
        resumed = bool(getattr(flags, "session_present", False))
        log.info(
            "connected to %s:%s as %s (%s)",
            m.host,
            m.port,
            m.client_id,
            "session resumed: queued windows follow" if resumed else "new session",
        )
        client.publish(self._status_topic, ONLINE, qos=1, retain=True)
        client.subscribe(
            [
                (m.subscription(m.topics.counts), mqtt.SubscribeOptions(qos=1)),
                (m.topics.status, mqtt.SubscribeOptions(qos=1)),
                (m.topics.health, mqtt.SubscribeOptions(qos=1)),
            ]
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("broker refused a subscription: %s", ", ".join(failed))
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self.counters.connected = False
        if not self.stop.is_set():
            log.warning("lost the broker (%s); reconnecting, unacknowledged windows will be redelivered", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._gen_lock:
            generation = self._generation
        payload, retained = bytes(message.payload), bool(message.retain)
        item = Incoming(message.topic, payload, message.mid, message.qos, generation, retained)
        # Blocks paho's thread while the writer is behind (the broker then holds further windows back);
        # a message not queued because we are stopping is not acknowledged, so the broker keeps it.
        while not self.stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    # ------------------------------------------------------------------ writer side (the caller's thread)

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def run(self) -> None:
        """Connect, then commit and acknowledge batches until ``stop`` is set."""
        store = self._open_store()
        m = self.config.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = m.session_expiry_s
        props.ReceiveMaximum = m.receive_maximum
        self._client.connect_async(m.host, m.port, keepalive=m.keepalive, clean_start=False, properties=props)
        self._client.loop_start()
        # Health on a timer of its own: a database outage holds the writer in its retry loop, and
        # that is when an operator most needs to hear from the collector.
        health = threading.Thread(target=self._health_loop, name="collector-health", daemon=True)
        health.start()
        try:
            while True:
                batch = self._take_batch()
                if batch:
                    store = self._commit(store, batch)
                if self.stop.is_set() and self._queue.empty():
                    break
        finally:
            health.join(timeout=5.0)
            self._shutdown(store)

    def _health_loop(self) -> None:
        while True:
            self._publish_health()
            if self.stop.wait(self.config.health_interval_s):
                return

    def _open_store(self) -> WindowStore | None:
        try:
            conn = psycopg.connect(**self.config.database.conninfo(), autocommit=True)
            migrate(conn)
            set_min_cell(conn, self.config.min_cell)
        except psycopg.OperationalError as exc:
            self.counters.db_ok = False
            self.counters.db_errors += 1
            log.error("database %s unreachable: %s", self._db_name(), str(exc).strip())
            return None
        self.counters.db_ok = True
        log.info("database %s ready (min_cell %d)", self._db_name(), self.config.min_cell)
        return WindowStore(conn, self.config.mqtt.client_id)

    def _db_name(self) -> str:
        d = self.config.database
        return f"{d.dbname} on {d.host}:{d.port}"

    def _take_batch(self) -> list[Incoming]:
        """Up to ``batch.max_rows`` messages: wait for the first, then at most ``max_wait_s`` for more."""
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.config.batch.max_wait_s
        while len(batch) < self.config.batch.max_rows:
            left = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _sort(self, batch: list[Incoming]) -> tuple[list[WindowRow], list[Rejected], list[DeviceStatus]]:
        """Each message checked at the door (``edge.fleet.messages``): a window, a status or health
        of the device its topic names, or a rejection with its reason."""
        topics = self.config.mqtt.topics
        windows: list[WindowRow] = []
        rejected: list[Rejected] = []
        statuses: list[DeviceStatus] = []
        for item in batch:
            parsed: WindowRow | DeviceStatus | Rejected
            if (device := device_of(item.topic, topics.status)) is not None:
                parsed = parse_status(item.topic, item.payload, device, item.retained)
            elif (device := device_of(item.topic, topics.health)) is not None:
                parsed = parse_health(item.topic, item.payload, device)
            elif (device := device_of(item.topic, topics.counts)) is not None:
                parsed = parse_window(item.topic, item.payload, device)
            else:  # a subscription wider than its filter: cannot come from a broker that obeys it
                parsed = Rejected(item.topic, "a topic this collector does not subscribe to", item.payload)
            if isinstance(parsed, Rejected):
                self._warnings.warn(
                    (device or "", parsed.kind), "rejected a message on %s: %s", item.topic[:200], parsed.reason
                )
                rejected.append(parsed)
            elif isinstance(parsed, DeviceStatus):
                statuses.append(parsed)
            else:
                if parsed.below_min_cell(self.config.min_cell):
                    self.counters.below_min_cell += 1
                    self._warnings.warn(
                        (parsed.window.device, "min_cell"),
                        "device %s publishes counts below the fleet's min_cell %d (its own min_cell is smaller)",
                        parsed.window.device,
                        self.config.min_cell,
                    )
                windows.append(parsed)
        return windows, rejected, statuses

    def _commit(self, store: WindowStore | None, batch: list[Incoming]) -> WindowStore | None:
        """Store ``batch`` (retrying while the database is down), then acknowledge it in order."""
        self.counters.received += len(batch)
        windows, rejected, statuses = self._sort(batch)
        delay = 1.0
        while True:
            if store is None or store.closed:
                store = self._open_store()
            if store is not None:
                t0 = time.monotonic()
                try:
                    result = store.write(windows, rejected, statuses)
                except psycopg.Error as exc:  # the store rejects what the database refuses of a message
                    self.counters.db_errors += 1
                    self.counters.db_ok = False
                    log.error("database write failed (%s); the batch is kept and retried", str(exc).strip())
                    store.close()
                    store = None
                else:
                    c = self.counters
                    c.db_ok = True
                    c.last_commit_ms = (time.monotonic() - t0) * 1000.0
                    c.stored += result.stored
                    c.duplicates += result.duplicates
                    c.rejected += result.rejected
                    c.rejected_by_kind.update(r.kind for r in rejected)
                    c.rejected_by_kind.update(r.kind for r in result.refused)
                    for r in result.refused:
                        self._warnings.warn(
                            (r.topic[:200], r.kind), "rejected a message on %s: %s", r.topic[:200], r.reason
                        )
                    c.statuses += result.statuses
                    c.batches += 1
                    break
            # Nothing is acknowledged meanwhile, so the broker keeps (and holds back) the windows.
            if self.stop.wait(delay):
                log.warning("stopping with the database down: %d message(s) left to the broker", len(batch))
                return store
            delay = min(delay * 2, _DB_RETRY_MAX_S)
        self._ack(batch)
        return store

    def _ack(self, batch: list[Incoming]) -> None:
        with self._gen_lock:
            generation = self._generation
        for item in batch:
            if item.qos == 0:
                continue
            if item.generation != generation or not self.counters.connected:
                self.counters.stale_acks += 1  # its connection is gone: the broker redelivers it
                continue
            self._client.ack(item.mid, item.qos)

    def health(self) -> dict[str, Any]:
        return health_message(self.counters, self.config.mqtt.client_id, self._queue.qsize())

    def _publish_health(self) -> None:
        doc = self.health()
        log.debug("health %s", doc)
        if self.counters.connected:
            self._client.publish(self._health_topic, json.dumps(doc), qos=1, retain=True)

    def _shutdown(self, store: WindowStore | None) -> None:
        try:
            if self.counters.connected:
                info = self._client.publish(self._status_topic, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout=5.0)
            self._client.disconnect()
        except (RuntimeError, ValueError) as exc:
            log.warning("could not say offline to the broker: %s", exc)
        finally:
            self._client.loop_stop()
            if store is not None:
                store.close()
        c = self.counters
        log.info(
            "collector stopped: %d message(s) received: %d window(s) stored, %d duplicate window(s), "
            "%d device status and health message(s), %d rejected%s",
            c.received,
            c.stored,
            c.duplicates,
            c.statuses,
            c.rejected,
            f" ({', '.join(f'{n} {kind}' for kind, n in sorted(c.rejected_by_kind.items()))})" if c.rejected else "",
        )
