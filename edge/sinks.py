"""Where finished windows go: a JSON-lines stream, or an MQTT broker with store-and-forward.

``MqttSink`` is built for an unattended device on an unreliable network:

* a window is committed to the on-disk ``Spool`` before any attempt to send it,
  and removed only when the broker acknowledges it (PUBACK for QoS 1), so a
  broker outage, a network outage, a crash or a power cut loses nothing (up to
  the spool's bound); delivery is at-least-once and consumers de-duplicate on
  ``(device, seq)``;
* windows leave strictly in ``seq`` order, with a bounded number in flight;
* reconnects back off exponentially, and every failed attempt is logged once
  with its cause (refused credentials, an untrusted certificate, ...) rather
  than crashing the service;
* ``status`` (retained, with a Last Will) and Home Assistant discovery make the
  device appear and disappear in dashboards without configuration there.

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
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.spool import Spool

log = logging.getLogger(__name__)
_paho_log = logging.getLogger(__name__ + ".paho")

HEALTH_SCHEMA = 1
STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
# Payload keys whose dict values are per-category counts (one HA sensor per cell).
BREAKDOWN_GROUPS = ("gender", "age", "expression", "ethnicity")
_MODEL = "Edge face analytics"
_DRAIN_RETRY_S = 5.0
_REFUSED_CREDENTIALS = {134, 135}  # MQTT 5 reason codes; paho maps 3.1.1 CONNACK 4/5 onto them


_S = TypeVar("_S", bound="Sink")


class SinkError(RuntimeError):
    """A sink cannot be set up as configured (missing password file, unreadable CA, ...)."""


# --------------------------------------------------------------------------- interface


class Sink(ABC):
    """Destination for window payloads and health reports."""

    type_name: ClassVar[str]

    @abstractmethod
    def publish_window(self, payload: Mapping[str, Any]) -> None:
        """Deliver one finished window (JSON-serialisable dict with an integer ``seq``)."""

    def publish_health(self, health: Mapping[str, Any]) -> None:
        """Report device health; sinks without a health channel ignore it."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Flush and release resources; idempotent."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# --------------------------------------------------------------------------- JSON lines


@dataclass(frozen=True, kw_only=True)
class JsonlSettings:
    """``path``: a file to append to, or ``"-"`` for stdout (the journal under systemd)."""

    path: str = "-"


class JsonlSink(Sink):
    """One JSON object per line, flushed per line so a tail or a pipe sees each window at once."""

    type_name: ClassVar[str] = "jsonl"

    def __init__(self, settings: JsonlSettings | None = None, *, stream: IO[str] | None = None) -> None:
        self.settings = settings or JsonlSettings()
        self._lock = threading.Lock()
        self._owned = False
        if stream is not None:
            self._stream: IO[str] = stream
        elif self.settings.path == "-":
            self._stream = sys.stdout
        else:
            path = Path(self.settings.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = path.open("a", encoding="utf-8")
            self._owned = True
        self._closed = False

    def publish_window(self, payload: Mapping[str, Any]) -> None:
        line = _dumps(payload) + "\n"
        with self._lock:
            if self._closed:
                raise SinkError("JsonlSink is closed")
            self._stream.write(line)
            self._stream.flush()

    def publish_health(self, health: Mapping[str, Any]) -> None:
        """Not written: the stream is a pure window log that consumers parse line by line."""
        log.debug("health: %s", _dumps(health))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._owned:
                self._stream.close()
            else:
                self._stream.flush()


# --------------------------------------------------------------------------- health


def _read_cpu_temp_c(path: Path = Path("/sys/class/thermal/thermal_zone0/temp")) -> float | None:
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware).
_THROTTLE_BITS = {
    "under_voltage": 0,
    "freq_capped": 1,
    "throttled": 2,
    "soft_temp_limit": 3,
    "under_voltage_occurred": 16,
    "freq_capped_occurred": 17,
    "throttled_occurred": 18,
    "soft_temp_limit_occurred": 19,
}


def _read_throttled() -> dict[str, Any] | None:
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=2, check=True).stdout
        value = int(out.strip().split("=", 1)[1], 16)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None
    return {"raw": hex(value), **{name: bool(value >> bit & 1) for name, bit in _THROTTLE_BITS.items()}}


def pi_health(spool: Spool | None = None) -> dict[str, Any]:
    """CPU temperature, Raspberry Pi throttling flags (None where unavailable) and spool figures.

    Under-voltage and thermal throttling are the usual causes of a Pi that
    "works on the bench" but drops frames in the field, so they are reported.
    """
    health: dict[str, Any] = {"cpu_temp_c": _read_cpu_temp_c(), "throttled": _read_throttled()}
    if spool is not None:
        health["spool"] = spool.stats()
    return health


def build_health(
    fields: Mapping[str, Any], *, device_id: str, spool: Spool | None = None, now: float | None = None
) -> dict[str, Any]:
    """A health message: the caller's ``fields`` plus device, timestamp and (when given) spool figures."""
    ts = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    msg: dict[str, Any] = {
        "schema": HEALTH_SCHEMA,
        "device": device_id,
        "ts": ts.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    msg.update(fields)
    if spool is not None:
        msg["spool"] = spool.stats(now)
    return msg


# --------------------------------------------------------------------------- MQTT settings


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
    # Breakdown cells (group, key) announced at connect; cells seen in windows are announced as they appear.
    discovery_cells: tuple[tuple[str, str], ...] = ()
    device_name: str | None = None  # Home Assistant device name; None: device_id
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 120.0
    max_inflight: int = 10  # windows sent but not yet acknowledged
    close_timeout_s: float = 5.0  # on close: wait this long for in-flight windows and `offline`


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


# --------------------------------------------------------------------------- Home Assistant discovery


def _slug(text: str) -> str:
    text = text.replace("<=", "le").replace(">=", "ge").replace("<", "lt").replace(">", "gt").replace("+", "_plus")
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "x"


def _template(*path: str) -> str:
    parts = "".join(f".{p}" if p.isidentifier() else f"[{json.dumps(p)}]" for p in path)
    return "{{ value_json" + parts + " }}"


# object id, name, template path, extra fields
_BASE_SENSORS: tuple[tuple[str, str, tuple[str, ...], dict[str, Any]], ...] = (
    ("visitors", "Visitors", ("visitors",), {"icon": "mdi:account-group"}),
    ("dwell_mean", "Mean dwell", ("dwell_s", "mean"), {"unit_of_measurement": "s", "device_class": "duration"}),
    ("faces_peak", "Peak faces", ("faces", "peak"), {"icon": "mdi:face-recognition"}),
)


def _cells_of(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(g, str(k)) for g in BREAKDOWN_GROUPS if isinstance(payload.get(g), Mapping) for k in payload[g]]


# --------------------------------------------------------------------------- MQTT sink


class MqttSink(Sink):
    """Publishes windows over MQTT with durable store-and-forward (see the module docstring).

    Topics (prefix default ``edge/<device_id>/``): ``status`` (retained online/offline, Last Will),
    ``counts`` (one QoS 1 message per window, not retained), ``health`` (retained), and
    Home Assistant discovery configs under ``<discovery_prefix>/sensor/<device_id>/<object>/config``.
    """

    type_name: ClassVar[str] = "mqtt"

    def __init__(self, settings: MqttSettings, spool: Spool, device_id: str, version: str = "0") -> None:
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
        self.refused = 0  # windows the broker rejected (MQTT 5 PUBACK failure); dropped so later ones can go
        self._cells_lock = threading.Lock()
        self._cells: dict[tuple[str, str], None] = dict.fromkeys(settings.discovery_cells)
        self._last_health: str | None = None
        self.connect_attempts = 0
        self._refused = False  # set by a refused CONNACK, so the disconnect that follows is not logged twice

        self._client = self._make_client(read_password(settings))
        self._drain = threading.Thread(target=self._drain_main, name=f"mqtt-drain-{device_id}", daemon=True)
        self._drain.start()
        if settings.protocol == "5":
            self._client.connect_async(settings.host, settings.port, settings.keepalive, clean_start=True)
        else:
            self._client.connect_async(settings.host, settings.port, settings.keepalive)
        self._client.loop_start()

    # ----------------------------------------------------------------- setup

    def _make_client(self, password: str | None) -> mqtt.Client:
        s = self.settings
        v5 = s.protocol == "5"
        client = mqtt.Client(
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
        if s.username is not None:
            client.username_pw_set(s.username, password)
        elif password is not None:
            raise SinkError("MQTT password is set but username is not")
        if s.tls is not None:
            client.tls_set_context(self._tls_context(s.tls))
            if s.tls.insecure:
                client.tls_insecure_set(True)
                log.warning(
                    "MQTT TLS host name checking is OFF (insecure: true); the certificate chain is still checked"
                )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    @staticmethod
    def _tls_context(tls: TlsSettings) -> ssl.SSLContext:
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

    # ----------------------------------------------------------------- public API

    @property
    def connected(self) -> bool:
        """Connected to the broker (CONNACK accepted) right now."""
        return self._connected.is_set()

    @property
    def in_flight(self) -> int:
        """Windows sent and awaiting the broker's acknowledgement."""
        return self._in_flight

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or ``timeout`` seconds pass."""
        return self._connected.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every spooled window is acknowledged (spool empty, nothing in flight)."""
        with self._idle_cv:
            return self._idle_cv.wait_for(lambda: self._idle, timeout)

    def publish_window(self, payload: Mapping[str, Any]) -> None:
        """Spool the window durably, then let the drain thread send it (in seq order after older ones)."""
        if self._closing:
            raise SinkError("MqttSink is closed")
        self.spool.put(payload)
        with self._idle_cv:  # both under the lock, so the drain thread cannot mark idle in between
            self._idle = False
            self._events.put(("kick",))

    def publish_health(self, health: Mapping[str, Any]) -> None:
        """Publish retained health (caller's fields + spool figures); the latest is re-sent on reconnect."""
        msg = build_health(health, device_id=self.device_id, spool=self.spool)
        msg["mqtt"] = {"connected": self.connected, "in_flight": self._in_flight, "refused": self.refused}
        self._last_health = _dumps(msg)
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
                cells = list(self._cells)
            for topic, config in self._discovery_configs(cells):
                client.publish(topic, _dumps(config), qos=1, retain=True)
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
        elif isinstance(exc, ssl.SSLError):
            log.error(
                "MQTT TLS handshake with %s failed: %s (CA: %s); %s",
                self._where,
                exc,
                tls.ca_file if tls is not None and tls.ca_file else "system CA store",
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
                "lost connection to MQTT broker %s (%s); windows are spooled, reconnecting with backoff",
                self._where,
                reason_code,
            )
        else:
            log.warning(
                "MQTT broker %s did not complete the connection (%s); retrying with backoff (up to %g s)",
                self._where,
                reason_code,
                self.settings.reconnect_max_s,
            )

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties | None
    ) -> None:
        # Called under paho's message mutex: only hand over, never block or take our locks.
        self._events.put(("ack", mid, reason_code))

    # ----------------------------------------------------------------- drain thread

    def _drain_main(self) -> None:
        """Own the mid -> seq map; publish pending windows in order while connected."""
        inflight: dict[int, int] = {}  # mid -> seq, in send order
        barrier: set[int] = set()  # mids paho re-sends itself after a reconnect
        connected = False
        while True:
            try:
                # The timeout re-runs the drain now and then, so a transient failure is retried
                # even when no new window or acknowledgement arrives.
                batch = [self._events.get(timeout=_DRAIN_RETRY_S)]
            except queue.Empty:
                batch = []
            while True:
                try:
                    batch.append(self._events.get_nowait())
                except queue.Empty:
                    break
            for event in batch:
                kind = event[0]
                if kind == "stop":
                    return
                if kind == "connected":
                    connected = True
                    # Paho re-sends its unacknowledged messages after on_connect returns; sending newer
                    # windows before those are acknowledged could reorder them on the wire.
                    barrier = set(inflight)
                elif kind == "disconnected":
                    connected = False
                elif kind == "ack":
                    self._handle_ack(inflight, barrier, event[1], event[2])
            try:
                if connected and not barrier:
                    self._send_pending(inflight)
                idle = not inflight and self.spool.depth() == 0
            except Exception:  # noqa: BLE001 - the thread must survive (e.g. a transient SQLite error)
                log.exception("MQTT drain failed; will retry on the next event")
                idle = False
            self._in_flight = len(inflight)
            with self._idle_cv:
                if idle and self._events.empty():
                    self._idle = True
                    self._idle_cv.notify_all()

    def _handle_ack(self, inflight: dict[int, int], barrier: set[int], mid: int, reason_code: ReasonCode) -> None:
        barrier.discard(mid)
        seq = inflight.pop(mid, None)
        if seq is None:
            return  # status/discovery/health, or a window from before a restart of this object
        if reason_code.is_failure:
            # Retrying cannot help (e.g. ACL denies the topic) and would block every later window.
            self.refused += 1
            log.error(
                "MQTT broker %s refused window seq %d on %s: %s (reason code %d); dropping it",
                self._where,
                seq,
                self.counts_topic,
                reason_code,
                reason_code.value,
            )
        self.spool.ack(seq)

    def _send_pending(self, inflight: dict[int, int]) -> None:
        room = self.settings.max_inflight - len(inflight)
        if room <= 0:
            return
        sent = set(inflight.values())
        for seq, payload in self.spool.pending(limit=room + len(sent)):
            if seq in sent:
                continue
            if room <= 0:
                break
            self._announce_new_cells(payload)
            info = self._client.publish(self.counts_topic, _dumps(payload), qos=self.settings.qos, retain=False)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("could not queue window seq %d: %s; will retry", seq, mqtt.error_string(info.rc))
                return
            # MQTT_ERR_NO_CONN: paho keeps the message and sends it on reconnect; track it like the others.
            inflight[info.mid] = seq
            room -= 1

    def _announce_new_cells(self, payload: Mapping[str, Any]) -> None:
        if not self.settings.discovery:
            return
        with self._cells_lock:
            new = [c for c in _cells_of(payload) if c not in self._cells]
            self._cells.update(dict.fromkeys(new))
        if new:
            for topic, config in self._discovery_configs(new, base=False):
                self._client.publish(topic, _dumps(config), qos=1, retain=True)

    def _discovery_configs(self, cells: list[tuple[str, str]], base: bool = True) -> list[tuple[str, dict[str, Any]]]:
        """Home Assistant sensor configs: the base sensors (if ``base``) and one per breakdown cell."""
        device = {
            "identifiers": [self.device_id],
            "name": self.settings.device_name or self.device_id,
            "model": _MODEL,
            "sw_version": self.version,
        }
        sensors: list[tuple[str, str, tuple[str, ...], dict[str, Any]]] = list(_BASE_SENSORS) if base else []
        for group, key in cells:
            sensors.append((f"{group}_{_slug(key)}", f"{group.capitalize()} {key}", (group, key), {}))
        out = []
        for obj, name, path, extra in sensors:
            config: dict[str, Any] = {
                "name": name,
                "unique_id": f"{self.device_id}_{obj}",
                "state_topic": self.counts_topic,
                "value_template": _template(*path),
                "state_class": "measurement",
                "availability_topic": self.status_topic,
                "payload_available": STATUS_ONLINE,
                "payload_not_available": STATUS_OFFLINE,
                "device": device,
                **extra,
            }
            out.append((f"{self.settings.discovery_prefix}/sensor/{self.device_id}/{obj}/config", config))
        return out


SINKS: dict[str, type[Sink]] = {JsonlSink.type_name: JsonlSink, MqttSink.type_name: MqttSink}
