"""``edge dashboard``: a small read-only web page over the collector's database.

Standard library only (``http.server``), so the fleet side needs nothing beyond
psycopg. The page (``edge/fleet/static/``) and its pinned chart library are
package data served from here, never from a CDN, so it works on a network with
no way out. Every figure comes from the database's views and ``fleet_mix``
(``edge.fleet.dashboard_data``), which already apply the minimum-cell rule
after summing.

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
from datetime import date, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg

from edge.config import ConfigError
from edge.fleet.config import FleetConfig
from edge.fleet.dashboard_data import iso, summary
from edge.secrets import read_password

log = logging.getLogger(__name__)

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


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
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
