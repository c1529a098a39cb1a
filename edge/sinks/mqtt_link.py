"""The MQTT sink's connection: a secured, supervised paho client and what happens on it.

Paho lets an unexpected exception (an IDNA error on a host name, a packet it cannot encode) end
its network thread silently; the sink would then spool for ever while looking healthy. A
``SupervisedClient`` records why its loop ended, so the sink can report it as its ``failure``
and the daemon can exit for the service manager to restart it.

``Link`` holds paho's callbacks. They run on paho's network thread and do only what belongs to
the connection (``status``, the discovery configs, the read-back subscription, the latest health
at every connect; stale discovery configs cleared; each failure logged once, in words); whatever
concerns windows is posted to the drain thread (``edge.sinks.mqtt_drain``). ``secure`` is shared
with ``edge forget``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config.errors import ConfigError
from edge.secrets import TlsConfig, TlsError, tls_context
from edge.sinks import mqtt_diagnostics as say
from edge.sinks.base import SinkError, dumps
from edge.sinks.discovery import STATUS_OFFLINE, STATUS_ONLINE, Announcements
from edge.sinks.mqtt_delivery import DeliveryTiming
from edge.state_store import StateStore

log = logging.getLogger("edge.sinks.mqtt")  # one logger for the sink, as its log lines always named it


class BrokerConfig(Protocol):
    """What the connection reads of the sink's section, ``edge.sinks.mqtt.MqttSinkConfig`` (named by
    its shape: that plugin module imports this one, so this one does not import it)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def protocol(self) -> str: ...  # "5" | "3.1.1"
    @property
    def keepalive(self) -> int: ...
    @property
    def read_back(self) -> bool: ...
    @property
    def tls(self) -> TlsConfig | None: ...
    @property
    def username(self) -> str | None: ...
    def password(self) -> str | None: ...  # read now from its file, variable or credential


class SupervisedClient(mqtt.Client):
    """A paho client whose network loop (run by ``loop_start``) records why it ended."""

    loop_error: BaseException | None = None
    loop_ended: bool = False

    def loop_forever(self, timeout: float = 1.0, retry_first_connection: bool = False) -> mqtt.MQTTErrorCode:
        try:
            return super().loop_forever(timeout, retry_first_connection)
        except BaseException as exc:
            self.loop_error, self.loop_ended = exc, True
            log.critical("the MQTT network thread died: %s: %s", type(exc).__name__, exc, exc_info=exc)
            return mqtt.MQTTErrorCode.MQTT_ERR_UNKNOWN
        finally:
            self.loop_ended = True


def secure(client: mqtt.Client, config: BrokerConfig) -> None:
    """Credentials and TLS on a new client, as configured; SinkError naming the file or variable
    that cannot be read (the password is read now, never kept)."""
    try:
        password = config.password()
    except ConfigError as exc:
        raise SinkError(f"MQTT password: {exc.describe()}") from exc
    if config.username is not None:
        client.username_pw_set(config.username, password)
    elif password is not None:
        raise SinkError("MQTT password is set but username is not")
    if config.tls is None:
        return
    try:
        context = tls_context(config.tls)
    except TlsError as exc:
        raise SinkError(f"MQTT {exc}") from exc
    client.tls_set_context(context)
    if config.tls.insecure:
        client.tls_insecure_set(True)
        log.warning("MQTT TLS host name checking is OFF (insecure: true); the certificate chain is still checked")


class Link:
    """The sink's connection to its broker; ``start`` connects in the background (paho reconnects
    with backoff for ever), ``finish`` says ``offline`` and disconnects."""

    def __init__(
        self,
        config: BrokerConfig,
        timing: DeliveryTiming,
        announcements: Announcements | None,
        spool: StateStore,
        *,
        device_id: str,
        status_topic: str,
        counts_topic: str,
        health_topic: str,
    ) -> None:
        self.config = config
        self.timing = timing
        self.announcements = announcements  # None: no Home Assistant discovery
        self._spool = spool
        self.device_id = device_id
        self.status_topic = status_topic
        self.counts_topic = counts_topic
        self.health_topic = health_topic
        self.where = f"{config.host}:{config.port}"
        self.connected = threading.Event()  # CONNACK accepted, connection up
        self.closing = False
        self.connect_attempts = 0
        self.cleared: list[str] = []  # stale discovery config topics cleared
        self.last_health: str | None = None  # re-sent at every connect
        # MQTT 3.1.1 cannot refuse a publish: windows count as delivered when they come back.
        self.read_back = config.protocol == "3.1.1" and config.read_back
        if config.protocol == "3.1.1" and not config.read_back:
            log.warning(say.NO_READ_BACK)
        self._read_back_denied = False
        self._read_back_mid: int | None = None
        self._refused = False  # set by a refused CONNACK, so the disconnect that follows is not logged twice
        self._post: Callable[..., None] = lambda *event: None
        self.client = self._new_client()

    def _new_client(self) -> SupervisedClient:
        """A fresh session per connection (the spool, not the broker, keeps what is undelivered),
        backoff per ``timing``, ``offline`` as the Last Will."""
        config, timing = self.config, self.timing
        v5 = config.protocol == "5"
        client = SupervisedClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.on_log = say.on_paho_log
        client.suppress_exceptions = True  # a bug in a callback is logged, not fatal to the network thread
        client.reconnect_delay_set(timing.reconnect_min_s, timing.reconnect_max_s)  # type: ignore[arg-type]
        # Paho's own window must not be the bottleneck; ours (max_inflight) bounds windows.
        client.max_inflight_messages_set(timing.max_inflight + 64)
        client.will_set(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
        secure(client, config)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def start(self, post: Callable[..., None]) -> None:
        """Connect in the background; events for the drain thread go to ``post``."""
        self._post = post
        if self.config.protocol == "5":
            self.client.connect_async(self.config.host, self.config.port, self.config.keepalive, clean_start=True)
        else:
            self.client.connect_async(self.config.host, self.config.port, self.config.keepalive)
        self.client.loop_start()

    def publish_health(self, text: str) -> None:
        """Retained health now if connected, and again at every connect."""
        self.last_health = text
        if self.connected.is_set():
            self.client.publish(self.health_topic, text, qos=1, retain=True)

    def announce_new_cells(self, payload: Mapping[str, Any]) -> None:
        """Before a window goes out (drain thread): entities for breakdown cells not announced yet."""
        if self.announcements is not None:
            for topic, config in self.announcements.new_cells(payload):
                self.client.publish(topic, dumps(config), qos=1, retain=True)

    def finish(self, timeout: float) -> None:
        """Publish ``offline`` (waiting up to ``timeout``), disconnect, stop the network thread."""
        self.closing = True
        if self.connected.is_set():
            try:
                info = self.client.publish(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout=timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish %s before disconnecting: %s", STATUS_OFFLINE, exc)
        self.client.disconnect()
        self.client.loop_stop()

    # ----------------------------------------------------------------- paho callbacks (network thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connect_attempts += 1
        if reason_code.is_failure:
            log.error(say.connect_refused(self.where, reason_code, self.config.username))
            self._refused = True
            return
        log.info(
            "connected to MQTT broker %s (MQTT %s%s) as %s; %d window(s) spooled",
            self.where,
            self.config.protocol,
            ", TLS" if self.config.tls else "",
            self.device_id,
            self._spool.depth(),
        )
        self.connected.set()
        client.publish(self.status_topic, STATUS_ONLINE, qos=1, retain=True)
        if self.announcements is not None:
            for topic, config in self.announcements.at_connect():
                client.publish(topic, dumps(config), qos=1, retain=True)
            # Retained configs of this device arrive after the SUBACK; any the current config does
            # not produce are cleared in _on_message.
            client.subscribe(self.announcements.device.config_filter, qos=1)
        if self.read_back and not self._read_back_denied:
            # Sent before any window on this connection, so the broker applies it to all of them.
            self._read_back_mid = client.subscribe(self.counts_topic, qos=1)[1]
        if self.last_health is not None:
            client.publish(self.health_topic, self.last_health, qos=1, retain=True)
        self._post("connected")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.connect_attempts += 1
        exc = sys.exc_info()[1]  # paho calls this from inside its `except OSError` block
        c = self.config
        level, line = say.connect_failed(
            exc, where=self.where, host=c.host, port=c.port, tls=c.tls, reconnect_max_s=self.timing.reconnect_max_s
        )
        log.log(level, line)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was = self.connected.is_set()
        refused, self._refused = self._refused, False
        self.connected.clear()
        self._post("disconnected")
        if self.closing or refused:
            return  # a refused CONNACK was already logged with its reason
        line = say.disconnected(
            was,
            flags,
            reason_code,
            where=self.where,
            device_id=self.device_id,
            keepalive=self.config.keepalive,
            port=self.config.port,
            tls=self.config.tls is not None,
            reconnect_max_s=self.timing.reconnect_max_s,
        )
        log.warning(line)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid == self._read_back_mid and reason_codes and reason_codes[0].is_failure:
            self._read_back_denied = True
            self._post("echo_denied", str(reason_codes[0]))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Our own window read back (MQTT 3.1.1 delivery check), or a retained discovery config of
        this device: cleared when the current config does not produce it."""
        if message.topic == self.counts_topic:
            self._post("echo", message.payload)
            return
        if not message.payload or self.announcements is None:
            return  # already cleared (by us or by `edge forget`), or no discovery here
        if self.announcements.stale(message.topic):
            log.info("removing Home Assistant entity %s: the current config does not produce it", message.topic)
            client.publish(message.topic, b"", qos=1, retain=True)
            self.cleared.append(message.topic)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties | None
    ) -> None:
        # Called under paho's message mutex: only hand over, never block or take our locks.
        self._post("ack", mid, reason_code)
