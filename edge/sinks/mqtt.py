"""The MQTT sink: windows to a broker with durable store-and-forward.

``MqttSink`` is built for an unattended device on an unreliable network:

* a window is committed to the state store's spool (``edge.state_store``) before any
  attempt to send it, and removed only when the broker acknowledges it (PUBACK for QoS 1), so a
  broker outage, a network outage, a crash or a power cut loses nothing (up to
  the spool's bound); delivery is at-least-once and consumers de-duplicate on
  ``(device, stream, seq)``;
* windows leave strictly in ``seq`` order, with a bounded number in flight;
* reconnects back off exponentially, and every failed attempt is logged once
  with its cause (refused credentials, an untrusted certificate, ...) rather
  than crashing the service;
* a window the broker refuses (an ACL, a quota) stays in the spool: it is
  retried alone every ``refused_retry_s`` and on every reconnect, later windows
  wait behind it, and ``health`` names it; over MQTT 3.1.1, where a broker
  acknowledges publishes its ACL drops, the sink reads its own windows back
  and treats one that does not come back as refused;
* paho's network thread is supervised: if it dies (a bug, or a value paho
  cannot encode), ``failure`` says why and the daemon exits non-zero so the
  service manager restarts it, rather than spooling for ever unseen;
* ``status`` (retained, with a Last Will) and Home Assistant discovery make the
  device appear and disappear in dashboards without configuration there; the
  discovery configs follow the current config (``edge.sinks.discovery``).

All publishing of windows happens on one "drain" thread that owns the
message-id -> seq map; paho's callbacks only post events to it. That keeps
the lock order trivial (paho calls ``on_publish`` while holding its own mutex,
so a callback that took our lock could deadlock against a publishing thread).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.checks import Finding, Options, finding, unreachable
from edge.config.fields import (
    POSITIVE_S,
    Check,
    Ctx,
    Invalid,
    boolean,
    choice,
    derived,
    integer,
    leaf,
    number,
    optional,
    section,
    text,
    utf8,
)
from edge.config.hosts import HOST, broker_host
from edge.plugins import Plugin
from edge.secrets import (
    NO_CLEAR_PASSWORD,
    TlsConfig,
    password_credential_field,
    password_env_field,
    password_file_field,
    password_problems,
    tls_findings,
)
from edge.secrets import read_password as read_secret_password
from edge.sinks.base import Sink, SinkConfig, SinkContext, SinkError, dumps
from edge.sinks.discovery import STATUS_OFFLINE, STATUS_ONLINE, DiscoveryDevice, cells_of, entity_configs
from edge.sinks.health import build_health
from edge.state_store import StateStore

log = logging.getLogger(__name__)
_paho_log = logging.getLogger(__name__ + ".paho")

_DRAIN_RETRY_S = 5.0
_REFUSED_CREDENTIALS = {134, 135}  # MQTT 5 reason codes; paho maps 3.1.1 CONNACK 4/5 onto them
_SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT: another client connected with this client id


# --------------------------------------------------------------------------- config section


@dataclass(frozen=True, kw_only=True)
class SpoolConfig:
    """Windows not yet acknowledged by the broker, kept in the state store (``edge.state_store``)."""

    _forbidden: ClassVar[dict[str, str]] = {
        "path": "no path: the spool lives in the state store, <state_dir>/state.sqlite3, numbered and "
        "stored with each window in one transaction (remove this key; a spool.sqlite3 left in state_dir "
        "is taken over at the next start)",
    }
    max_windows: int = leaf(10080, integer("a window count >= 1", lo=1))


@dataclass(frozen=True, kw_only=True)
class DiscoveryConfig:
    """Home Assistant MQTT discovery."""

    enabled: bool = leaf(True, boolean())
    prefix: str = leaf("homeassistant", text("a topic prefix without + or #", r"[^+#]+"))


# MQTT topics are at most 65,535 bytes; a prefix far below that leaves room for the topic names
# and for Home Assistant's discovery topics.
_TOPIC_PREFIX_MAX_BYTES = 1024


def _topic_prefix(v: Any, ctx: Ctx) -> str:
    if not isinstance(v, str) or not v or any(c in v for c in "+#\x00"):
        raise Invalid
    if v.startswith("$"):
        raise Invalid("a topic prefix not starting with '$' (brokers reserve those topics, e.g. $SYS)")
    if len(utf8(v, "a topic prefix")) > _TOPIC_PREFIX_MAX_BYTES:
        raise Invalid(f"a topic prefix of at most {_TOPIC_PREFIX_MAX_BYTES} bytes")
    return v if v.endswith("/") else v + "/"


@dataclass(frozen=True, kw_only=True)
class MqttSinkConfig(SinkConfig):
    """MQTT publisher. The password never sits in this file: it is read from a
    file, an environment variable or a systemd credential (see ``password()``)."""

    type: ClassVar[str] = "mqtt"
    _forbidden: ClassVar[dict[str, str]] = NO_CLEAR_PASSWORD
    host: str = leaf("localhost", Check(HOST, broker_host))
    port: int = leaf(1883, integer("a TCP port 1..65535", lo=1, hi=65535))
    protocol: str = leaf("5", choice("5", "3.1.1"))
    # MQTT 3.1.1 cannot refuse a publish (a broker acknowledges what its ACL drops): with read_back
    # a window counts as delivered when it comes back on the device's own subscription. Needs
    # read access to the counts topic; false trusts the acknowledgement. Ignored for MQTT 5.
    read_back: bool = leaf(True, boolean())
    # MQTT encodes the keepalive in 16 bits.
    keepalive: int = leaf(60, integer("a keepalive in whole seconds from 1 to 65535", lo=1, hi=65535))
    topic_prefix: str = derived(
        Check("a topic prefix without + or #", _topic_prefix),
        lambda ctx: f"edge/{ctx.context.get('device_id', '<device_id>')}/",
    )
    # QoS 0 has no PUBACK, so a spooled window could never be confirmed: at least once needs >= 1.
    qos: int = leaf(1, choice(1, 2))
    tls: TlsConfig | None = section(TlsConfig, optional=True)
    username: str | None = leaf(None, optional(text("a user name")))
    password_file: Path | None = password_file_field()
    password_env: str | None = password_env_field()
    password_credential: str | None = password_credential_field()
    spool: SpoolConfig = section(SpoolConfig)
    health_interval_s: float = leaf(30.0, number(POSITIVE_S, lo=0, lo_open=True))
    discovery: DiscoveryConfig = section(DiscoveryConfig)

    def _problems(self) -> Iterator[tuple[str, Any, str]]:
        yield from password_problems(self)

    def password(self) -> str | None:
        """Read the broker password from its configured place (None when none is set).

        Read on demand, not at parse time, so the secret is not kept in the
        config object (which may be logged).
        """
        return read_secret_password(self, "sink")


# --------------------------------------------------------------------------- the sink


@dataclass(frozen=True, kw_only=True)
class TlsSettings:
    """TLS to the broker. Certificates and host names are checked unless ``insecure`` (host name only)."""

    ca_file: Path | None = None  # None: the system CA store
    cert_file: Path | None = None  # client certificate (with key_file)
    key_file: Path | None = None
    insecure: bool = False  # True skips the host name check (never the chain): testing only


@dataclass(frozen=True, kw_only=True)
class MqttSettings:
    """Everything ``MqttSink`` needs; the password itself is read from one of three places, never kept here."""

    host: str = "localhost"
    port: int = 1883
    protocol: str = "5"  # "5" | "3.1.1"
    read_back: bool = True  # MQTT 3.1.1: a window is delivered when it comes back (needs read access)
    keepalive: int = 60
    topic_prefix: str | None = None  # None: "edge/<device_id>/"
    qos: int = 1  # for counts; at-least-once needs >= 1
    tls: TlsSettings | None = None
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None  # name of an environment variable
    password_credential: str | None = None  # systemd credential name, read from $CREDENTIALS_DIRECTORY
    discovery: bool = True  # Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"
    # Breakdown cells (group, key) announced at connect: every cell the config produces. Retained
    # configs of this device for anything else are cleared. Cells seen in windows are announced too.
    discovery_cells: tuple[tuple[str, str], ...] = ()
    device_name: str | None = None  # Home Assistant device name; None: device_id
    window_s: int | None = None  # window length: Home Assistant expires a sensor after two missed windows
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 120.0
    max_inflight: int = 10  # windows sent but not yet acknowledged
    close_timeout_s: float = 5.0  # on close: wait this long for in-flight windows and `offline`
    refused_retry_s: float = 60.0  # a window the broker refused is offered again this often
    echo_timeout_s: float = 30.0  # MQTT 3.1.1: an acknowledged window must come back within this


@dataclass(frozen=True)
class RefusedWindow:
    """The window the broker refuses right now; later windows wait behind it."""

    seq: int
    reason: str
    since: float  # wall clock of the first refusal


class _SupervisedClient(mqtt.Client):
    """A paho client whose network loop (run by ``loop_start``) records why it ended.

    Paho lets an unexpected exception (an IDNA error on a host name, a packet it cannot encode)
    end its thread silently; the sink would then spool for ever while looking healthy.
    """

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


def read_password(settings: MqttSettings) -> str | None:
    """The broker password from its configured place; SinkError naming the place when it cannot be read."""
    sources = [s for s in ("password_file", "password_env", "password_credential") if getattr(settings, s)]
    if len(sources) > 1:
        raise SinkError(f"MQTT password: set only one of {', '.join(sources)}")
    if settings.password_file is not None:
        return _read_secret(Path(settings.password_file), "MQTT password file")
    if settings.password_env is not None:
        value = os.environ.get(settings.password_env)
        if value is None:
            raise SinkError(f"MQTT password: environment variable {settings.password_env} is not set")
        return value
    if settings.password_credential is not None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise SinkError(
                f"MQTT password: credential {settings.password_credential!r} needs systemd "
                "LoadCredential= ($CREDENTIALS_DIRECTORY is not set)"
            )
        return _read_secret(Path(creds) / settings.password_credential, "MQTT password credential")
    return None


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SinkError(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """A verifying client context (CERT_REQUIRED, host name check) from the configured files."""
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"MQTT TLS CA file {tls.ca_file} cannot be loaded: {exc}") from exc
    if (tls.cert_file is None) != (tls.key_file is None):
        raise SinkError("MQTT TLS: cert_file and key_file must be given together")
    if tls.cert_file is not None:
        try:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise SinkError(
                f"MQTT TLS client certificate {tls.cert_file} / key {tls.key_file} cannot be loaded: {exc}"
            ) from exc
    if tls.insecure:
        ctx.check_hostname = False
    return ctx


def secure(client: mqtt.Client, settings: MqttSettings, password: str | None) -> None:
    """Credentials and TLS on a new client, as configured."""
    if settings.username is not None:
        client.username_pw_set(settings.username, password)
    elif password is not None:
        raise SinkError("MQTT password is set but username is not")
    if settings.tls is not None:
        client.tls_set_context(tls_context(settings.tls))
        if settings.tls.insecure:
            client.tls_insecure_set(True)
            log.warning("MQTT TLS host name checking is OFF (insecure: true); the certificate chain is still checked")


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class _Delivery:
    """The drain thread's own view of what is on the wire (no other thread touches it)."""

    connected: bool = False
    inflight: dict[int, int] = field(default_factory=dict)  # mid -> seq, awaiting PUBACK, in send order
    barrier: set[int] = field(default_factory=set)  # mids paho re-sends itself after a reconnect
    awaiting: dict[int, float] = field(default_factory=dict)  # MQTT 3.1.1: seq -> deadline for its echo
    echoed: set[int] = field(default_factory=set)  # echoes that overtook their PUBACK
    retry_at: float = 0.0  # monotonic time the refused window may be offered again


class MqttSink(Sink):
    """Publishes windows over MQTT with durable store-and-forward (see the module docstring).

    Topics (prefix default ``edge/<device_id>/``): ``status`` (retained online/offline, Last Will),
    ``counts`` (one QoS 1 message per window, not retained), ``health`` (retained), and
    Home Assistant discovery configs under ``<discovery_prefix>/sensor/<device_id>/<object>/config``.
    """

    type_name: ClassVar[str] = "mqtt"

    def __init__(self, settings: MqttSettings, spool: StateStore, device_id: str, version: str = "0") -> None:
        if settings.protocol not in ("5", "3.1.1"):
            raise SinkError(f"MQTT protocol must be '5' or '3.1.1', got {settings.protocol!r}")
        if settings.max_inflight < 1:
            raise SinkError(f"max_inflight must be >= 1, got {settings.max_inflight}")
        self.settings = settings
        self.spool = spool
        self.device_id = device_id
        self.version = version
        prefix = settings.topic_prefix or f"edge/{device_id}/"
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.status_topic = self.prefix + "status"
        self.counts_topic = self.prefix + "counts"
        self.health_topic = self.prefix + "health"
        self._where = f"{settings.host}:{settings.port}"

        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._closing = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._idle_cv = threading.Condition()
        self._idle = spool.depth() == 0
        self._in_flight = 0
        self.refused = 0  # refusals so far (a window the broker rejected, counted per attempt)
        self.refused_window: RefusedWindow | None = None  # the window held back now, if any
        # MQTT 3.1.1 cannot refuse a publish: windows count as delivered when they come back.
        self._echo = settings.protocol == "3.1.1" and settings.read_back
        if settings.protocol == "3.1.1" and not settings.read_back:
            log.warning(
                "MQTT 3.1.1 with read_back off: a window the broker's ACL drops is acknowledged and lost "
                "without notice; prefer protocol '5'"
            )
        self._echo_denied = False
        self._echo_mid: int | None = None
        self._cells_lock = threading.Lock()
        self._cells: dict[tuple[str, str], None] = dict.fromkeys(settings.discovery_cells)
        self._configured = frozenset(settings.discovery_cells)  # empty: any cell a window carries
        self.discovery = DiscoveryDevice(
            device_id=device_id,
            name=settings.device_name or device_id,
            version=version,
            prefix=settings.discovery_prefix,
            counts_topic=self.counts_topic,
            status_topic=self.status_topic,
            window_s=settings.window_s,
            health_topic=self.health_topic,
        )
        self._wanted: set[str] = set()  # discovery config topics the current config produces
        self.cleared: list[str] = []  # stale discovery config topics cleared by this sink
        self._last_health: str | None = None
        self.connect_attempts = 0
        self._refused = False  # set by a refused CONNACK, so the disconnect that follows is not logged twice

        self._client: _SupervisedClient = self._make_client(read_password(settings))
        self._drain = threading.Thread(target=self._drain_main, name=f"mqtt-drain-{device_id}", daemon=True)
        self._drain.start()
        if settings.protocol == "5":
            self._client.connect_async(settings.host, settings.port, settings.keepalive, clean_start=True)
        else:
            self._client.connect_async(settings.host, settings.port, settings.keepalive)
        self._client.loop_start()

    # ----------------------------------------------------------------- setup

    def _make_client(self, password: str | None) -> _SupervisedClient:
        s = self.settings
        v5 = s.protocol == "5"
        client = _SupervisedClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.on_log = self._on_paho_log
        client.suppress_exceptions = True  # a bug in a callback is logged, not fatal to the network thread
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)  # type: ignore[arg-type]
        # Paho's own window must not be the bottleneck; ours (max_inflight) bounds windows.
        client.max_inflight_messages_set(s.max_inflight + 64)
        client.will_set(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
        secure(client, s, password)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # ----------------------------------------------------------------- public API

    @property
    def connected(self) -> bool:
        """Connected to the broker (CONNACK accepted) right now."""
        return self._connected.is_set()

    @property
    def in_flight(self) -> int:
        """Windows sent and awaiting the broker's acknowledgement."""
        return self._in_flight

    @property
    def failure(self) -> str | None:
        """Why this sink can no longer deliver (its network or drain thread ended), or None."""
        if self._closing:
            return None
        if self._client.loop_ended:
            error = self._client.loop_error
            cause = f"{type(error).__name__}: {error}" if error is not None else "it returned"
            return f"the MQTT network thread for {self._where} stopped ({cause})"
        if not self._drain.is_alive():
            return "the MQTT drain thread stopped"
        return None

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or ``timeout`` seconds pass."""
        return self._connected.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every spooled window is acknowledged (spool empty, nothing in flight)."""
        with self._idle_cv:
            return self._idle_cv.wait_for(lambda: self._idle, timeout)

    def publish_window(self, payload: Mapping[str, Any]) -> None:
        """Let the drain thread send a window (in seq order after older ones); the state store
        spooled it already when it numbered it (``put`` leaves a spooled window as it is)."""
        if self._closing:
            raise SinkError("MqttSink is closed")
        self.spool.put(payload)
        with self._idle_cv:  # both under the lock, so the drain thread cannot mark idle in between
            self._idle = False
            self._events.put(("kick",))

    def publish_health(self, health: Mapping[str, Any]) -> None:
        """Publish retained health (caller's fields + spool figures); the latest is re-sent on reconnect."""
        msg = build_health(health, device_id=self.device_id, spool=self.spool)
        held = self.refused_window
        msg["mqtt"] = {
            "connected": self.connected,
            "in_flight": self._in_flight,
            "refused": self.refused,
            "refused_window": None
            if held is None
            else {"seq": held.seq, "reason": held.reason, "since": _iso(held.since)},
        }
        self._last_health = dumps(msg)
        if self._connected.is_set():
            self._client.publish(self.health_topic, self._last_health, qos=1, retain=True)

    def close(self) -> None:
        """Give in-flight windows a moment, publish ``offline``, disconnect cleanly.

        Unacknowledged windows stay in the spool for the next run. Close the sink before
        its spool (the sink does not own the spool).
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        timeout = self.settings.close_timeout_s
        if self._connected.is_set() and timeout > 0:
            self.wait_idle(timeout)
        self._closing = True
        self._events.put(("stop",))
        self._drain.join(timeout=max(timeout, 1.0))
        if self._connected.is_set():
            try:
                info = self._client.publish(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout=timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish %s before disconnecting: %s", STATUS_OFFLINE, exc)
        self._client.disconnect()
        self._client.loop_stop()
        log.info("MQTT sink closed (%d window(s) left in the spool)", self.spool.depth())

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
            hint = ""
            if reason_code.value in _REFUSED_CREDENTIALS:
                if self.settings.username is None:
                    hint = "; the broker wants credentials: set sink.username and a password"
                else:
                    hint = f"; check the MQTT user name ({self.settings.username!r}) and password"
            log.error(
                "MQTT broker %s refused the connection: %s (reason code %d)%s; retrying with backoff",
                self._where,
                reason_code,
                reason_code.value,
                hint,
            )
            self._refused = True
            return
        depth = self.spool.depth()
        log.info(
            "connected to MQTT broker %s (MQTT %s%s) as %s; %d window(s) spooled",
            self._where,
            self.settings.protocol,
            ", TLS" if self.settings.tls else "",
            self.device_id,
            depth,
        )
        self._connected.set()
        client.publish(self.status_topic, STATUS_ONLINE, qos=1, retain=True)
        if self.settings.discovery:
            with self._cells_lock:
                configs = entity_configs(self.discovery, list(self._cells))
                self._wanted.update(topic for topic, _ in configs)
            for topic, config in configs:
                client.publish(topic, dumps(config), qos=1, retain=True)
            # Retained configs of this device arrive after the SUBACK; any the current config does
            # not produce are cleared in _on_message.
            client.subscribe(self.discovery.config_filter, qos=1)
        if self._echo and not self._echo_denied:
            # Sent before any window on this connection, so the broker applies it to all of them.
            self._echo_mid = client.subscribe(self.counts_topic, qos=1)[1]
        if self._last_health is not None:
            client.publish(self.health_topic, self._last_health, qos=1, retain=True)
        self._events.put(("connected",))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.connect_attempts += 1
        exc = sys.exc_info()[1]  # paho calls this from inside its `except OSError` block
        retry = f"retrying with backoff (up to {self.settings.reconnect_max_s:g} s)"
        tls = self.settings.tls
        if isinstance(exc, ssl.SSLCertVerificationError):
            ca = f"CA file {tls.ca_file}" if tls is not None and tls.ca_file else "the system CA store"
            hint = ""
            if exc.verify_code == 62 or "hostname" in str(exc.verify_message).lower():  # X509_V_ERR_HOSTNAME_MISMATCH
                hint = f" (the certificate does not name host {self.settings.host!r})"
            log.error(
                "MQTT TLS to %s failed: broker certificate rejected (certificate verify failed: %s)%s; "
                "trusted CAs: %s; %s",
                self._where,
                exc.verify_message or exc.reason,
                hint,
                ca,
                retry,
            )
        elif tls is not None and isinstance(exc, (ssl.SSLError, ConnectionResetError, ConnectionAbortedError)):
            plain = isinstance(exc, (ssl.SSLEOFError, ConnectionResetError, ConnectionAbortedError))
            log.error(
                "MQTT TLS handshake with %s failed: %s (CA: %s)%s; %s",
                self._where,
                exc,
                tls.ca_file if tls.ca_file else "system CA store",
                f"; is port {self.settings.port} a TLS listener? A plain MQTT port closes a TLS handshake"
                if plain
                else "",
                retry,
            )
        else:
            log.warning("cannot connect to MQTT broker %s: %s; %s", self._where, exc or "connection failed", retry)

    @staticmethod
    def _on_paho_log(client: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
        # Paho reports "Client is not connected" at ERROR on every loop pass while offline; our own
        # callbacks already log each failure once with its cause, so keep paho's chatter at DEBUG.
        if level == mqtt.MQTT_LOG_ERR and "not connected" not in buf:
            _paho_log.error("%s", buf)
        else:
            _paho_log.debug("%s", buf)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was = self._connected.is_set()
        refused, self._refused = self._refused, False
        self._connected.clear()
        self._events.put(("disconnected",))
        if self._closing or refused:
            return  # a refused CONNACK was already logged with its reason
        if was:
            log.warning(
                "lost connection to MQTT broker %s: %s; windows are spooled, reconnecting with backoff",
                self._where,
                self._disconnect_cause(flags, reason_code),
            )
        else:
            hint = ""
            if self.settings.tls is None and not flags.is_disconnect_packet_from_server:
                hint = f" (if port {self.settings.port} is a TLS listener, configure sink.tls)"
            log.warning(
                "MQTT broker %s did not complete the connection: %s%s; retrying with backoff (up to %g s)",
                self._where,
                self._disconnect_cause(flags, reason_code),
                hint,
                self.settings.reconnect_max_s,
            )

    def _disconnect_cause(self, flags: mqtt.DisconnectFlags, reason_code: ReasonCode) -> str:
        """Why a connection ended, in words an operator can act on."""
        if flags.is_disconnect_packet_from_server:
            text = f"the broker closed it: {reason_code} (reason code {reason_code.value})"
            if reason_code.value == _SESSION_TAKEN_OVER:
                text += (
                    f"; another client connected with the client id {self.device_id!r}: two devices or two "
                    "daemons share this device_id"
                )
            return text
        if str(reason_code) == "Keep alive timeout":
            return (
                f"no reply from the broker within the keepalive ({self.settings.keepalive} s): "
                "the network or the broker stopped answering"
            )
        return (
            "the connection was closed or reset (the network, a broker restart, or another client connecting "
            f"with the client id {self.device_id!r}: two devices or two daemons sharing a device_id)"
        )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid == self._echo_mid and reason_codes and reason_codes[0].is_failure:
            self._echo_denied = True
            self._events.put(("echo_denied", str(reason_codes[0])))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Our own window read back (MQTT 3.1.1 delivery check), or a retained discovery config of
        this device: cleared when the current config does not produce it."""
        if message.topic == self.counts_topic:
            self._events.put(("echo", message.payload))
            return
        if not message.payload:
            return  # already cleared (by us or by `edge forget`)
        with self._cells_lock:
            stale = message.topic not in self._wanted
        if stale:
            log.info("removing Home Assistant entity %s: the current config does not produce it", message.topic)
            client.publish(message.topic, b"", qos=1, retain=True)
            self.cleared.append(message.topic)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties | None
    ) -> None:
        # Called under paho's message mutex: only hand over, never block or take our locks.
        self._events.put(("ack", mid, reason_code))

    # ----------------------------------------------------------------- drain thread

    def _drain_main(self) -> None:
        """Own the delivery state; publish pending windows in order while connected."""
        d = _Delivery()
        while True:
            try:
                # The timeout re-runs the drain now and then, so a transient failure is retried
                # and a refused window offered again even when no event arrives.
                batch = [self._events.get(timeout=_DRAIN_RETRY_S)]
            except queue.Empty:
                batch = []
            while True:
                try:
                    batch.append(self._events.get_nowait())
                except queue.Empty:
                    break
            try:
                for event in batch:
                    kind = event[0]
                    if kind == "stop":
                        return
                    if kind == "connected":
                        d.connected = True
                        # Paho re-sends its unacknowledged messages after on_connect returns; sending newer
                        # windows before those are acknowledged could reorder them on the wire.
                        d.barrier = set(d.inflight)
                        d.retry_at = 0.0  # a refused window is offered again at once on a new connection
                    elif kind == "disconnected":
                        d.connected = False
                        d.awaiting.clear()  # their echo may be lost with the link: send them again
                    elif kind == "ack":
                        self._handle_ack(d, event[1], event[2])
                    elif kind == "echo":
                        self._handle_echo(d, event[1])
                    elif kind == "echo_denied":
                        self._echo_unavailable(d, event[1])
                self._check_echo_deadlines(d)
                if d.connected and not d.barrier:
                    self._send_pending(d)
                idle = not d.inflight and not d.awaiting and self.spool.depth() == 0
            except Exception:  # noqa: BLE001 - the thread must survive (e.g. a transient SQLite error)
                log.exception("MQTT drain failed; will retry on the next event")
                idle = False
            self._in_flight = len(d.inflight) + len(d.awaiting)
            with self._idle_cv:
                if idle and self._events.empty():
                    self._idle = True
                    self._idle_cv.notify_all()

    def _handle_ack(self, d: _Delivery, mid: int, reason_code: ReasonCode) -> None:
        d.barrier.discard(mid)
        seq = d.inflight.pop(mid, None)
        if seq is None:
            return  # status/discovery/health, or a window from before a restart of this object
        if reason_code.is_failure:
            self._refuse(d, seq, f"{reason_code} (reason code {reason_code.value})")
        elif self._echo and not self._echo_denied and seq not in d.echoed:
            d.awaiting[seq] = time.monotonic() + self.settings.echo_timeout_s
        else:
            d.echoed.discard(seq)
            self._delivered(seq)

    def _handle_echo(self, d: _Delivery, raw: bytes) -> None:
        try:
            payload = json.loads(raw)
            seq = payload["seq"] if payload.get("device") == self.device_id else None
        except (ValueError, TypeError, KeyError, AttributeError):
            return
        if not isinstance(seq, int):
            return  # not one of our windows
        if seq in d.awaiting:
            del d.awaiting[seq]
            self._delivered(seq)
        elif seq in d.inflight.values():
            d.echoed.add(seq)  # came back before its PUBACK was handled

    def _echo_unavailable(self, d: _Delivery, reason: str) -> None:
        log.warning(
            "the broker does not let this device read back its windows on %s (%s): over MQTT 3.1.1 a window "
            "the broker's ACL drops cannot be told from a delivered one; grant read access to that topic or "
            "use protocol '5'",
            self.counts_topic,
            reason,
        )
        for seq in list(d.awaiting):
            self._delivered(seq)
        d.awaiting.clear()

    def _check_echo_deadlines(self, d: _Delivery) -> None:
        now = time.monotonic()
        for seq, deadline in list(d.awaiting.items()):
            if now >= deadline:
                del d.awaiting[seq]
                self._refuse(
                    d,
                    seq,
                    f"acknowledged but not read back within {self.settings.echo_timeout_s:g} s: over MQTT "
                    "3.1.1 a broker acknowledges a publish its ACL drops; if this client may publish but "
                    f"not read {self.counts_topic}, grant read access or set sink.read_back: false",
                )

    def _refuse(self, d: _Delivery, seq: int, reason: str) -> None:
        """Keep a refused window; offer it again, alone, later (fixing the broker needs no restart)."""
        self.refused += 1
        d.retry_at = time.monotonic() + self.settings.refused_retry_s
        held = self.refused_window
        if held is not None and held.seq <= seq:
            log.debug("window seq %d refused again: %s", seq, reason)
            return
        self.refused_window = RefusedWindow(seq=seq, reason=reason, since=time.time())
        log.error(
            "MQTT broker %s refused window seq %d on %s: %s; it stays in the spool and is offered again every "
            "%g s and on every reconnect, later windows wait behind it (allow this client to publish to %s, "
            "e.g. in the broker's ACL, or change sink.topic_prefix)",
            self._where,
            seq,
            self.counts_topic,
            reason,
            self.settings.refused_retry_s,
            self.counts_topic,
        )

    def _delivered(self, seq: int) -> None:
        self.spool.ack(seq)
        held = self.refused_window
        if held is None:
            return
        if seq != held.seq:
            # A later window got through (it was out before the refusal): the held one is still
            # refused unless the spool has since evicted it.
            oldest = self.spool.pending(limit=1)
            if oldest and oldest[0][0] <= held.seq:
                return
        self.refused_window = None
        log.warning(
            "MQTT broker %s accepted window seq %d after refusing it for %.0f s; the windows behind it follow",
            self._where,
            seq,
            time.time() - held.since,
        )

    def _send_pending(self, d: _Delivery) -> None:
        if self.refused_window is not None:
            # Offer only the oldest window, and only when its retry is due and nothing is out.
            if d.inflight or d.awaiting or time.monotonic() < d.retry_at:
                return
            room = 1
        else:
            room = self.settings.max_inflight - len(d.inflight) - len(d.awaiting)
        if room <= 0:
            return
        sent = set(d.inflight.values()) | set(d.awaiting)
        for seq, payload in self.spool.pending(limit=room + len(sent)):
            if seq in sent:
                continue
            if room <= 0:
                break
            self._announce_new_cells(payload)
            info = self._client.publish(self.counts_topic, dumps(payload), qos=self.settings.qos, retain=False)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("could not queue window seq %d: %s; will retry", seq, mqtt.error_string(info.rc))
                return
            # MQTT_ERR_NO_CONN: paho keeps the message and sends it on reconnect; track it like the others.
            d.inflight[info.mid] = seq
            room -= 1

    def _announce_new_cells(self, payload: Mapping[str, Any]) -> None:
        if not self.settings.discovery:
            return
        # A window made under another config (spooled, or recovered from a checkpoint) may carry
        # breakdowns the current config does not produce: they get no entity.
        with self._cells_lock:
            new = [
                c for c in cells_of(payload) if c not in self._cells and (not self._configured or c in self._configured)
            ]
            self._cells.update(dict.fromkeys(new))
            configs = entity_configs(self.discovery, new, base=False) if new else []
            self._wanted.update(topic for topic, _ in configs)
        for topic, config in configs:
            self._client.publish(topic, dumps(config), qos=1, retain=True)


# --------------------------------------------------------------------------- plugin


def check(cfg: MqttSinkConfig, key: str, options: Options) -> Iterator[Finding]:
    """TLS material must load (an error: paho gives up); the broker is probed (a warning: paho retries)."""
    if cfg.tls is not None:
        yield from tls_findings(cfg.tls, f"{key}.tls")
    why = unreachable(cfg.host, cfg.port, options.timeout_s)
    if why is not None:
        yield finding(
            "warning",
            f"{key}.host",
            cfg.host,
            f"an MQTT broker accepting connections on port {cfg.port}",
            why,
            "`edge run` spools windows and keeps reconnecting, so this may be transient",
        )


def mqtt_settings(sink: MqttSinkConfig, context: SinkContext) -> MqttSettings:
    """The MQTT sink's settings from the config (also used by ``edge forget``)."""
    tls = None
    if sink.tls is not None:
        tls = TlsSettings(
            ca_file=sink.tls.ca_file,
            cert_file=sink.tls.cert_file,
            key_file=sink.tls.key_file,
            insecure=sink.tls.insecure,
        )
    return MqttSettings(
        host=sink.host,
        port=sink.port,
        protocol=sink.protocol,
        read_back=sink.read_back,
        keepalive=sink.keepalive,
        topic_prefix=sink.topic_prefix,
        qos=sink.qos,
        tls=tls,
        username=sink.username,
        password_file=sink.password_file,
        password_env=sink.password_env,
        password_credential=sink.password_credential,
        discovery=sink.discovery.enabled,
        discovery_prefix=sink.discovery.prefix,
        discovery_cells=tuple((group, label) for group, labels in (context.cells or {}).items() for label in labels),
        window_s=context.window_s,
    )


def build(config: MqttSinkConfig, context: SinkContext, store: StateStore) -> MqttSink:
    return MqttSink(mqtt_settings(config, context), store, context.device_id, context.version)


PLUGIN = Plugin(config=MqttSinkConfig, build=build, check=check)
