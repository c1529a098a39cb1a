"""The collector's and the dashboard's typed configuration (one YAML file for both).

Validated by the same machinery and with the same messages as the device's
config (``edge.config``): unknown keys are errors, every message names the key
path, the value and what was expected, and passwords are never in the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config.build import load_typed, parse_typed
from edge.config.fields import (
    POSITIVE_S,
    Check,
    Invalid,
    choice,
    file_path,
    integer,
    leaf,
    number,
    optional,
    section,
    text,
)
from edge.config.hosts import HOST, broker_host
from edge.secrets import (
    NO_CLEAR_PASSWORD,
    PASSWORD_SOURCES,
    TlsConfig,
    password_credential_field,
    password_env_field,
    password_file_field,
    password_problems,
    read_password,
)

_CLIENT_ID = text("1 to 64 letters, digits, '_' or '-' (the broker keeps the session under it)", r"[A-Za-z0-9_-]{1,64}")


def _topic_filter(v: Any, ctx: Any) -> str:
    """A subscription filter whose one ``+`` level is the device id (``edge/+/counts``)."""
    if not isinstance(v, str) or not v or "\x00" in v or v.startswith("$"):
        raise Invalid
    levels = v.split("/")
    if levels.count("+") != 1 or any(("+" in lv or "#" in lv) and lv != "+" for lv in levels) or "#" in levels:
        raise Invalid("a topic filter with exactly one '+' level (the device id) and no '#', e.g. 'edge/+/counts'")
    return v


_FILTER = Check("a topic filter with one '+' level for the device id", _topic_filter)


@dataclass(frozen=True, kw_only=True)
class TopicsConfig:
    """What the devices publish (their ``topic_prefix`` with the device id as ``+``)."""

    counts: str = leaf("edge/+/counts", _FILTER)
    health: str = leaf("edge/+/health", _FILTER)
    status: str = leaf("edge/+/status", _FILTER)


@dataclass(frozen=True, kw_only=True)
class CollectorMqttConfig:
    """The collector's MQTT 5 session. Its client id is fixed so the broker keeps the session
    (and the windows queued in it) while the collector is down, for ``session_expiry_s``."""

    _forbidden = NO_CLEAR_PASSWORD
    host: str = leaf("localhost", Check(HOST, broker_host))
    port: int = leaf(1883, integer("a TCP port 1..65535", lo=1, hi=65535))
    client_id: str = leaf("edge-collector", _CLIENT_ID)
    # MQTT 5 shared subscription ($share/<group>/...): collectors with the same group split the windows.
    share_group: str | None = leaf(None, optional(text("a group name without / + #", r"[^/+#\x00]+"), "not shared"))
    session_expiry_s: int = leaf(
        7 * 86400, integer("seconds from 60 to 4294967294 the broker keeps the session", lo=60, hi=4294967294)
    )
    keepalive: int = leaf(30, integer("a keepalive in whole seconds from 1 to 65535", lo=1, hi=65535))
    # Windows the broker may send before one is acknowledged (MQTT 5 Receive Maximum).
    receive_maximum: int = leaf(1000, integer("a number from 1 to 65535", lo=1, hi=65535))
    topics: TopicsConfig = section(TopicsConfig)
    # The collector's own retained status (Last Will "offline") and health: <status_prefix>status, ...health.
    status_prefix: str | None = leaf(
        None,
        optional(text("a topic prefix without + or #", r"[^+#\x00$][^+#\x00]*"), "fleet/collectors/<client_id>/"),
    )
    tls: TlsConfig | None = section(TlsConfig, optional=True)
    username: str | None = leaf(None, optional(text("a user name")))
    password_file: Path | None = password_file_field()
    password_env: str | None = password_env_field()
    password_credential: str | None = password_credential_field()
    reconnect_max_s: float = leaf(60.0, number(POSITIVE_S, lo=0, lo_open=True))

    def _problems(self) -> Iterator[tuple[str, Any, str]]:
        yield from password_problems(self)

    @property
    def own_prefix(self) -> str:
        prefix = self.status_prefix or f"fleet/collectors/{self.client_id}/"
        return prefix if prefix.endswith("/") else prefix + "/"

    def subscription(self, topic: str) -> str:
        return f"$share/{self.share_group}/{topic}" if self.share_group else topic


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    """PostgreSQL. The password comes from a file, an environment variable or a systemd
    credential; ``PGPASSWORD``/``~/.pgpass`` also work when none is set here (libpq reads them)."""

    _forbidden = NO_CLEAR_PASSWORD
    host: str = leaf("localhost", text("a host name, an IP address or a Unix socket folder"))
    port: int = leaf(5432, integer("a TCP port 1..65535", lo=1, hi=65535))
    dbname: str = leaf("edge_fleet", text("a database name"))
    username: str | None = leaf(None, optional(text("a database role"), "the operating-system user"))
    password_file: Path | None = password_file_field()
    password_env: str | None = password_env_field()
    password_credential: str | None = password_credential_field()
    sslmode: str = leaf("prefer", choice("disable", "allow", "prefer", "require", "verify-ca", "verify-full"))
    sslrootcert: Path | None = leaf(None, optional(file_path("a CA bundle file")))
    connect_timeout_s: int = leaf(10, integer("whole seconds from 1 to 600", lo=1, hi=600))

    def _problems(self) -> Iterator[tuple[str, Any, str]]:
        yield from password_problems(self)

    def conninfo(self, path: str = "database", *, read_only: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` (the password read now, never stored)."""
        kw: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout_s,
            "application_name": "edge-dashboard" if read_only else "edge-collector",
        }
        if self.username is not None:
            kw["user"] = self.username
        password = read_password(self, path)
        if password is not None:
            kw["password"] = password
        if self.sslrootcert is not None:
            kw["sslrootcert"] = str(self.sslrootcert)
        if read_only:
            kw["options"] = "-c default_transaction_read_only=on"
        return kw


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """Windows committed per transaction: a PUBACK goes out only after its window's commit."""

    max_rows: int = leaf(500, integer("a row count from 1 to 10000", lo=1, hi=10000))
    max_wait_s: float = leaf(0.2, number("seconds from 0 to 10", lo=0, hi=10))
    queue: int = leaf(5000, integer("a message count from 1 to 1000000", lo=1, hi=1_000_000))


@dataclass(frozen=True, kw_only=True)
class DashboardAuthConfig:
    """HTTP Basic authentication for the dashboard (use it behind TLS: a reverse proxy)."""

    username: str = leaf("edge", text("a user name"))
    password_file: Path | None = password_file_field()
    password_env: str | None = password_env_field()
    password_credential: str | None = password_credential_field()

    def _problems(self) -> Iterator[tuple[str, Any, str]]:
        given = [k for k in PASSWORD_SOURCES if getattr(self, k)]
        if len(given) != 1:
            yield "password_file", self.password_file, "exactly one of password_file, password_env, password_credential"


@dataclass(frozen=True, kw_only=True)
class DashboardConfig:
    """``edge dashboard``: a read-only page over the collector's database."""

    bind: str = leaf("127.0.0.1", text("an address to listen on (127.0.0.1: this machine only)"))
    port: int = leaf(8080, integer("a TCP port 1..65535", lo=1, hi=65535))
    days: int = leaf(14, integer("a number of days from 1 to 366", lo=1, hi=366))
    offline_after_s: float = leaf(180.0, number(POSITIVE_S, lo=0, lo_open=True))
    auth: DashboardAuthConfig | None = section(DashboardAuthConfig, optional=True)


@dataclass(frozen=True, kw_only=True)
class FleetConfig:
    """The whole file: ``edge collect`` uses mqtt, database and batch; ``edge dashboard`` database
    and dashboard. ``min_cell`` is applied again by every view after summing (``edge.fleet.schema``)."""

    mqtt: CollectorMqttConfig = section(CollectorMqttConfig)
    database: DatabaseConfig = section(DatabaseConfig)
    batch: BatchConfig = section(BatchConfig)
    min_cell: int = leaf(5, integer("a minimum cell size >= 1", lo=1))
    health_interval_s: float = leaf(30.0, number(POSITIVE_S, lo=0, lo_open=True))
    dashboard: DashboardConfig = section(DashboardConfig)
    log_level: str = leaf("INFO", choice("DEBUG", "INFO", "WARNING", "ERROR"))


def load_fleet_config(path: str | os.PathLike[str]) -> FleetConfig:
    """Read and validate a collector/dashboard YAML file; ``ConfigError`` lists every problem."""
    return load_typed(path, FleetConfig)


def parse_fleet_config(mapping: dict[str, Any], source: str = "<dict>") -> FleetConfig:
    return parse_typed(mapping, FleetConfig, source)
