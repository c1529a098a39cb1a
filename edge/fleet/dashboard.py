"""``edge dashboard``: a small read-only web page over the collector's database.

Standard library only (``http.server``), so the fleet side needs nothing beyond
psycopg. The page (``edge/fleet/static/``) and its pinned chart library are
package data served from here, never from a CDN, so it works on a network with
no way out. Every figure comes from the database's views and ``fleet_mix``,
which already apply the minimum-cell rule after summing: this module only
reshapes rows into series and never sees a count the views did not publish.

Each request opens its own short read-only connection (a dashboard has a few
users; a pool would only hold connections the collector may need), with a
statement timeout so a slow query cannot hold a thread for ever.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg

from edge.config import ConfigError
from edge.fleet.config import FleetConfig
from edge.secrets import read_password

log = logging.getLogger(__name__)

HOURS = 48  # the hourly chart's span
MAX_DAYS = 366
STATEMENT_TIMEOUT_MS = 15_000
# Only files the page needs, by extension; anything else under static/ is a 404.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
}
# Chart.js draws on canvases and needs no eval or inline code; the page has no inline script or style.
CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_STATIC = re.compile(r"/static/(?:(vendor)/)?([A-Za-z0-9][A-Za-z0-9_.-]*)")
_ALLOW = "GET, HEAD"


class DashboardServer(ThreadingHTTPServer):
    """The HTTP server with the fleet config and the dashboard password (read once at start,
    so a missing password file stops ``edge dashboard`` at once rather than at the first visit)."""

    daemon_threads = True

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        auth = config.dashboard.auth
        self.credentials: tuple[bytes, bytes] | None = None
        if auth is not None:
            password = read_password(auth, "dashboard.auth")
            if not password:
                raise ConfigError("dashboard.auth", None, "a non-empty password", got="an empty one")
            self.credentials = (auth.username.encode(), password.encode())
        if ":" in config.dashboard.bind:
            self.address_family = socket.AF_INET6
        super().__init__((config.dashboard.bind, config.dashboard.port), DashboardHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log instead of the base class's traceback on stderr (a client closing early is routine)."""
        log.debug("dashboard: request from %s failed", client_address, exc_info=True)


def make_server(config: FleetConfig) -> ThreadingHTTPServer:
    """A bound, not yet serving dashboard server (port 0 picks a free port: ``server_address[1]``)."""
    return DashboardServer(config)


def serve(config: FleetConfig, stop: threading.Event) -> None:
    """Serve the dashboard until ``stop`` is set, then stop accepting, finish and close the socket."""
    server = make_server(config)
    host, port = server.server_address[:2]
    log.info("dashboard on http://%s:%d/ (database %s)", _url_host(str(host)), port, config.database.dbname)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.25}, name="dashboard")
    thread.start()
    try:
        stop.wait()
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        log.info("dashboard stopped")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def connect(config: FleetConfig) -> psycopg.Connection[Any]:
    """A short read-only connection; timestamps come back in UTC, as the views bucket them."""
    kw = config.database.conninfo("database", read_only=True)
    kw["options"] = f"{kw.get('options', '')} -c statement_timeout={STATEMENT_TIMEOUT_MS} -c TimeZone=UTC".strip()
    return psycopg.connect(**kw, autocommit=True)


# --- the data the page plots ------------------------------------------------------------------


def summary(conn: psycopg.Connection[Any], days: int, offline_after_s: float) -> dict[str, Any]:
    """Everything the page draws, in one read-only transaction (one consistent snapshot).

    Series are lists aligned with their axis; ``None`` is a gap: either no window was stored
    (``hidden`` false) or the count is 1..min_cell-1 and was withheld (``hidden`` true).
    """
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT now(), fleet_min_cell()").fetchone()
        assert row is not None
        now: datetime = row[0].astimezone(timezone.utc)
        min_cell: int = row[1]
        hour0 = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
        day0 = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
        hours = [hour0 + timedelta(hours=i) for i in range(HOURS)]
        day_axis = [day0 + timedelta(days=i) for i in range(days)]

        hourly = conn.execute(
            "SELECT period_start, site, visitors FROM visitors_hourly_site"
            " WHERE period_start >= %s AND period_start <= %s",
            (hour0, now),
        ).fetchall()
        daily = conn.execute(
            "SELECT period_start, site, device, visitors FROM visitors_daily"
            " WHERE period_start >= %s AND period_start <= %s",
            (day0, now),
        ).fetchall()
        dwell = conn.execute(
            "SELECT period_start, site, dwell_mean_s FROM visitors_daily_site"
            " WHERE period_start >= %s AND period_start <= %s",
            (day0, now),
        ).fetchall()
        mix = conn.execute(
            "SELECT site, attribute, cell, visitors, n FROM fleet_mix(%s, %s)"
            " WHERE attribute IN ('gender', 'age', 'expression')",
            (day0, now),
        ).fetchall()
        devices = conn.execute(
            """
            SELECT device, site, status, status_at, last_seen, last_window_end, health_at,
                   coalesce(status = 'online' AND last_seen >= now() - make_interval(secs => %s), false),
                   CASE WHEN jsonb_typeof(health -> 'spool' -> 'depth') = 'number'
                        THEN (health -> 'spool' ->> 'depth')::numeric::bigint END,
                   CASE WHEN jsonb_typeof(health -> 'fps') = 'number' THEN (health ->> 'fps')::float8 END,
                   CASE WHEN jsonb_typeof(health -> 'version') = 'string' THEN health ->> 'version' END,
                   CASE WHEN jsonb_typeof(health -> 'uptime_s') = 'number' THEN (health ->> 'uptime_s')::float8 END
            FROM devices ORDER BY site NULLS LAST, device
            """,
            (offline_after_s,),
        ).fetchall()

    device_sites = {r[2]: r[1] for r in daily}
    return {
        "generated_at": _iso(now),
        "min_cell": min_cell,
        "days": days,
        "hourly": {
            "hours": [_iso(h) for h in hours],
            "series": _series(hours, ((r[1], r[0], r[2]) for r in hourly)),
        },
        "daily": {
            "days": [d.date().isoformat() for d in day_axis],
            "series": [
                {**s, "site": device_sites.get(s["name"])}
                for s in _series(day_axis, ((r[2], r[0], r[3]) for r in daily))
            ],
        },
        "dwell": {
            "days": [d.date().isoformat() for d in day_axis],
            "series": _series(day_axis, ((r[1], r[0], r[2]) for r in dwell), ndigits=1),
        },
        "mix": _mix(mix),
        "devices": [
            {
                "device": r[0],
                "site": r[1],
                "status": r[2],
                "status_at": _iso(r[3]),
                "last_seen": _iso(r[4]),
                "last_window_end": _iso(r[5]),
                "health_at": _iso(r[6]),
                "online": r[7],
                "spool_depth": r[8],
                "fps": r[9],
                "version": r[10],
                "uptime_s": r[11],
            }
            for r in devices
        ],
    }


def _series(axis: list[datetime], rows: Any, ndigits: int | None = None) -> list[dict[str, Any]]:
    """Rows of (name, period start, value) as one list per name aligned with ``axis``."""
    index = {t: i for i, t in enumerate(axis)}
    out: dict[str, dict[str, Any]] = {}
    for name, period, value in rows:
        i = index.get(period.astimezone(timezone.utc))
        if i is None:
            continue
        s = out.setdefault(name, {"name": name, "values": [None] * len(axis), "hidden": [False] * len(axis)})
        if value is None:
            s["hidden"][i] = True
        else:
            s["values"][i] = round(float(value), ndigits) if ndigits is not None else int(value)
    return [out[k] for k in sorted(out)]


def _mix(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """fleet_mix rows as one entry per site and attribute: cells (null = withheld) and total n."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for site, attribute, cell, visitors, n in rows:
        entry = out.setdefault((site, attribute), {"site": site, "attribute": attribute, "n": n, "cells": {}})
        entry["cells"][cell] = visitors
    for entry in out.values():
        entry["cells"] = dict(sorted(entry["cells"].items(), key=lambda kv: _cell_order(kv[0])))
    return [out[k] for k in sorted(out)]


def _cell_order(cell: str) -> tuple[int, float, str]:
    """Age brackets by their lower bound, "unknown" last, anything else by name."""
    if cell == "unknown":
        return (2, 0.0, cell)
    m = re.match(r"(\d+)", cell)
    return (0, float(m.group(1)), cell) if m else (1, 0.0, cell)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --- HTTP ------------------------------------------------------------------------------------


class _Reply(Exception):
    """An early answer (status, JSON body, extra headers) from inside a route."""

    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class DashboardHandler(BaseHTTPRequestHandler):
    """GET/HEAD only; every response carries the CSP and nosniff headers (``end_headers``)."""

    server: DashboardServer
    server_version = "edge-dashboard"
    sys_version = ""  # no Python version in the Server header
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection gives its thread back after this many seconds

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _not_allowed(self) -> None:
        self.close_connection = True  # the request body, if any, is never read
        self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{self.command} not allowed"}, {"Allow": _ALLOW})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _handle(self) -> None:
        try:
            if not self._authorised():
                raise _Reply(
                    HTTPStatus.UNAUTHORIZED,
                    "authentication required",
                    {"WWW-Authenticate": 'Basic realm="edge dashboard", charset="UTF-8"'},
                )
            url = urlsplit(self.path)
            path = unquote(url.path)
            route = self._route(path)
            route(parse_qs(url.query))
        except (ConnectionError, TimeoutError) as exc:  # the client went away mid-answer: routine
            self.close_connection = True
            log.debug("dashboard: %s %s: %s", self.command, self.path, exc)
        except _Reply as reply:
            self._send_json(reply.status, {"error": str(reply)}, reply.headers)
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
            # Read-only: the dashboard never migrates; the collector does at its start.
            log.warning("dashboard: %s %s: no fleet schema: %s", self.command, self.path, exc)
            message = (
                f"database {self.server.config.database.dbname!r} has no fleet schema yet "
                f"(edge collect creates it when it starts): {str(exc).splitlines()[0]}"
            )
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": message})
        except (psycopg.Error, ConfigError) as exc:
            # Database down, wrong password, statement timeout: the page shows the message.
            log.warning("dashboard: %s %s: database error: %s", self.command, self.path, exc)
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"database: {exc}".strip()})
        except Exception:
            log.exception("dashboard: %s %s failed", self.command, self.path)
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error (see the dashboard's log)"})

    def _route(self, path: str) -> Callable[[dict[str, list[str]]], None]:
        if path in ("/", "/index.html"):
            return lambda _q: self._static(None, "index.html")
        if path == "/api/summary":
            return self._summary
        if path == "/healthz":
            return self._healthz
        m = _STATIC.fullmatch(path)
        if m and ".." not in m.group(2):
            folder, name = m.group(1), m.group(2)
            return lambda _q: self._static(folder, name)
        raise _Reply(HTTPStatus.NOT_FOUND, "not found")

    def _authorised(self) -> bool:
        """HTTP Basic against the configured user; both parts compared in constant time."""
        expected = self.server.credentials
        if expected is None:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        user_ok = hmac.compare_digest(user, expected[0])
        password_ok = hmac.compare_digest(password, expected[1])
        return bool(sep) and user_ok and password_ok

    def _static(self, folder: str | None, name: str) -> None:
        ctype = next((t for ext, t in CONTENT_TYPES.items() if name.endswith(ext)), None)
        root = resources.files("edge.fleet").joinpath("static")
        resource = (root.joinpath(folder) if folder else root).joinpath(name)
        if ctype is None or not resource.is_file():
            raise _Reply(HTTPStatus.NOT_FOUND, "not found")
        self._send(HTTPStatus.OK, resource.read_bytes(), ctype, {"Cache-Control": "no-cache"})

    def _summary(self, query: dict[str, list[str]]) -> None:
        config = self.server.config.dashboard
        days = config.days
        if "days" in query:
            raw = query["days"][-1]
            if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= MAX_DAYS:
                raise _Reply(HTTPStatus.BAD_REQUEST, f"days: expected a whole number from 1 to {MAX_DAYS}, got {raw!r}")
            days = int(raw)
        with connect(self.server.config) as conn:
            body = summary(conn, days, config.offline_after_s)
        self._send_json(HTTPStatus.OK, body)

    def _healthz(self, _query: dict[str, list[str]]) -> None:
        with connect(self.server.config) as conn:
            conn.execute("SELECT 1").fetchone()
        self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8", {"Cache-Control": "no-store"})

    def _send_json(self, status: HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, default=_json_default, separators=(",", ":")).encode()
        self._send(status, data, "application/json", {"Cache-Control": "no-store", **(headers or {})})

    def _send(self, status: HTTPStatus, data: bytes, ctype: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
