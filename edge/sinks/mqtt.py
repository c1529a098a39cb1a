"""The MQTT sink plugin: windows to a broker with durable store-and-forward.

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

This module holds the plugin (config section, ``edge check`` probe, ``build``) and ``MqttSink``,
which puts the parts together: ``mqtt_link`` (the connection: a secured, supervised paho client
and its callbacks), ``mqtt_drain`` (the one thread that publishes windows), ``mqtt_delivery``
(its bookkeeping, free of paho, threads and clocks) and ``mqtt_diagnostics`` (the log lines).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

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
    read_password,
    tls_findings,
)
from edge.sinks.base import Sink, SinkConfig, SinkContext, SinkError, dumps
from edge.sinks.discovery import Announcements, DiscoveryDevice, PeopleSensors
from edge.sinks.health import build_health
from edge.sinks.mqtt_delivery import Delivery, DeliveryTiming, RefusedWindow
from edge.sinks.mqtt_drain import Drain
from edge.sinks.mqtt_link import Link
from edge.state_store import StateStore
from edge.window import Window

log = logging.getLogger(__name__)

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
        return read_password(self, "sink")


# --------------------------------------------------------------------------- the sink

DEFAULT_TIMING = DeliveryTiming()


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class MqttSink(Sink):
    """Publishes windows over MQTT with durable store-and-forward (see the module docstring).

    Topics (``topic_prefix``, by default ``edge/<device_id>/``): ``status`` (retained online/offline,
    Last Will), ``counts`` (one QoS 1 message per window, not retained), ``health`` (retained), and
    Home Assistant discovery configs under ``<discovery prefix>/sensor/<device_id>/<object>/config``
    for the base sensors, the viewer sensors (if ``context.attention``), the people sensors (if
    ``context.people``: crossings with ``context.line``, occupancy of ``context.zones``) and the
    breakdown cells ``context`` names.
    """

    def __init__(
        self,
        config: MqttSinkConfig,
        spool: StateStore,
        context: SinkContext,
        *,
        timing: DeliveryTiming = DEFAULT_TIMING,
    ) -> None:
        if config.protocol not in ("5", "3.1.1"):
            raise SinkError(f"MQTT protocol must be '5' or '3.1.1', got {config.protocol!r}")
        if timing.max_inflight < 1:
            raise SinkError(f"max_inflight must be >= 1, got {timing.max_inflight}")
        self.config = config
        self.timing = timing
        self.spool = spool
        self.device_id = device_id = context.device_id
        self.version = context.version
        prefix = config.topic_prefix or f"edge/{device_id}/"
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.status_topic = self.prefix + "status"
        self.counts_topic = self.prefix + "counts"
        self.health_topic = self.prefix + "health"
        self.discovery = DiscoveryDevice(
            device_id=device_id,
            name=device_id,
            version=context.version,
            prefix=config.discovery.prefix,
            counts_topic=self.counts_topic,
            status_topic=self.status_topic,
            window_s=context.window_s,
            health_topic=self.health_topic,
        )
        # Every breakdown cell the config produces (and, with attention or people on, their sensors)
        # is announced at connect; retained configs of this device for anything else are cleared.
        # Cells seen in windows are announced too.
        cells = [(group, label) for group, labels in (context.cells or {}).items() for label in labels]
        people = PeopleSensors(context.line, context.zones) if context.people else None
        self._link = Link(  # reads the password and TLS files: SinkError here, before any thread starts
            config,
            timing,
            Announcements(self.discovery, cells, context.attention, people) if config.discovery.enabled else None,
            spool,
            device_id=device_id,
            status_topic=self.status_topic,
            counts_topic=self.counts_topic,
            health_topic=self.health_topic,
        )
        self._delivery = Delivery(timing, read_back=self._link.read_back)
        self._drain = Drain(
            client=self._link.client,
            spool=spool,
            delivery=self._delivery,
            device_id=device_id,
            counts_topic=self.counts_topic,
            qos=config.qos,
            where=self._link.where,
            announce=self._link.announce_new_cells,
        )
        self._closed = False
        self._close_lock = threading.Lock()
        self._drain.start()
        self._link.start(self._drain.post)

    # ----------------------------------------------------------------- state

    @property
    def connected(self) -> bool:
        """Connected to the broker (CONNACK accepted) right now."""
        return self._link.connected.is_set()

    @property
    def connect_attempts(self) -> int:
        """Connection attempts so far, successful or not."""
        return self._link.connect_attempts

    @property
    def cleared(self) -> list[str]:
        """Retained discovery configs of this device cleared because the current config does not produce them."""
        return self._link.cleared

    @property
    def in_flight(self) -> int:
        """Windows sent and awaiting the broker's acknowledgement."""
        return self._drain.in_flight

    @property
    def refused(self) -> int:
        """Refusals so far (a window the broker rejected, counted per attempt)."""
        return self._delivery.refused

    @property
    def refused_window(self) -> RefusedWindow | None:
        """The window the broker refuses now (later windows wait behind it), if any."""
        return self._delivery.refused_window

    @property
    def failure(self) -> str | None:
        """Why this sink can no longer deliver (its network or drain thread ended), or None."""
        if self._link.closing:
            return None
        client = self._link.client
        if client.loop_ended:
            error = client.loop_error
            cause = f"{type(error).__name__}: {error}" if error is not None else "it returned"
            return f"the MQTT network thread for {self._link.where} stopped ({cause})"
        if not self._drain.alive:
            return "the MQTT drain thread stopped"
        return None

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or ``timeout`` seconds pass."""
        return self._link.connected.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every spooled window is acknowledged (spool empty, nothing in flight)."""
        return self._drain.wait_idle(timeout)

    # ----------------------------------------------------------------- Sink

    def publish_window(self, window: Window) -> None:
        """Let the drain thread send a window (in seq order after older ones); the state store
        spooled it already when it numbered it (``put`` leaves a spooled window as it is)."""
        if self._link.closing:
            raise SinkError("MqttSink is closed")
        self.spool.put(window)
        self._drain.kick()

    def publish_health(self, health: Mapping[str, Any]) -> None:
        """Publish retained health (caller's fields + spool figures); the latest is re-sent on reconnect."""
        msg = build_health(health, device_id=self.device_id, spool=self.spool)
        held = self.refused_window
        msg["mqtt"] = {
            "connected": self.connected,
            "in_flight": self.in_flight,
            "refused": self.refused,
            "refused_window": None
            if held is None
            else {"seq": held.seq, "reason": held.reason, "since": _iso(held.since)},
        }
        self._link.publish_health(dumps(msg))

    def close(self) -> None:
        """Give in-flight windows a moment, publish ``offline``, disconnect cleanly.

        Unacknowledged windows stay in the spool for the next run. Close the sink before
        its spool (the sink does not own the spool).
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        timeout = self.timing.close_timeout_s
        if self.connected and timeout > 0:
            self.wait_idle(timeout)
        self._link.closing = True
        self._drain.stop(timeout=max(timeout, 1.0))
        self._link.finish(timeout)
        log.info("MQTT sink closed (%d window(s) left in the spool)", self.spool.depth())


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


def build(config: MqttSinkConfig, context: SinkContext, store: StateStore) -> MqttSink:
    return MqttSink(config, store, context)


PLUGIN = Plugin(config=MqttSinkConfig, build=build, check=check)
