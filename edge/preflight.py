"""Would this config start? The side-effect-free checks behind ``edge check``.

Validation (``edge.config``) proves the file is well formed; it cannot know that
the video file is missing, that picamera2 is not installed or that the CA file is
garbage -- things ``edge run`` trips over in its first second. This module looks
at them without starting anything: files are read, the broker gets one TCP
connect and close (no MQTT session), cameras and streams are never opened.

Levels: what would certainly stop ``edge run`` is an ``error``. What may be
transient (DNS, a broker or camera host that is down, which ``edge run``
survives by retrying) is a ``warning``, and so is a permission problem, because
``edge check`` may run as another user than the service.

Each source/sink config class is mapped to its own check with ``register_check``;
a new type is one more registered function, not a branch here.
"""

from __future__ import annotations

import getpass
import importlib
import logging
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import cv2

from edge.config import (
    Config,
    FileSourceConfig,
    JsonlSinkConfig,
    MqttSinkConfig,
    Picamera2SourceConfig,
    RtspSourceConfig,
    TlsConfig,
    V4l2SourceConfig,
)
from edge.models import Manifest, ModelError
from edge.sources import V4l2Source, redact_url

log = logging.getLogger(__name__)

Level = Literal["error", "warning"]
DEFAULT_TIMEOUT_S = 2.0
PICAMERA2_INSTALL = (
    "on Raspberry Pi OS `sudo apt install python3-picamera2`, and create the venv with "
    "`python3 -m venv --system-site-packages` so it can see that package"
)
_V4L2_MAJOR = 81  # Linux: every /dev/video* node (Documentation/admin-guide/devices.txt)
_STREAM_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


@dataclass(frozen=True)
class Finding:
    """One problem: its ``level``, the config ``key`` path and a message with value, expectation and fix."""

    level: Level
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


@dataclass(frozen=True)
class Options:
    """Knobs shared by all checks."""

    timeout_s: float = DEFAULT_TIMEOUT_S  # per network probe (name lookup + TCP connect)


C = TypeVar("C")
Check = Callable[[Any, str, Options], Iterable[Finding]]
_CHECKS: dict[type, Check] = {}


def register_check(cls: type[C]) -> Callable[[Callable[[C, str, Options], Iterable[Finding]]], Check]:
    """Decorator: ``fn(config, key, options)`` checks configs of ``cls`` (and subclasses) found at ``key``."""

    def add(fn: Callable[[C, str, Options], Iterable[Finding]]) -> Check:
        _CHECKS[cls] = fn
        return fn

    return add


def check_for(cls: type) -> Check | None:
    """The check registered for ``cls`` or its nearest base class, if any."""
    return next((_CHECKS[k] for k in cls.__mro__ if k in _CHECKS), None)


def preflight(config: Config, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[Finding, ...]:
    """Everything that would stop (error) or may trouble (warning) ``edge run`` with ``config``."""
    options = Options(timeout_s=timeout_s)
    findings: list[Finding] = []
    for key, part in (("source", config.source), ("sink", config.sink)):
        check = check_for(type(part))
        if check is None:
            log.debug("no preflight check for %s type %r", key, type(part).type)
            continue
        findings.extend(check(part, key, options))
    findings.extend(_models(config))
    for finding in findings:
        log.debug("preflight %s: %s", finding.level, finding)
    return tuple(findings)


def refuses_start(config: Config, finding: Finding) -> bool:
    """Whether ``edge run`` must not start with ``finding``: any error (a missing or damaged video
    file, a model that does not match, a sink file it cannot write, bad TLS files) except one about
    a camera or stream the daemon waits for (it reopens them with backoff: a USB camera enumerates
    late, a network camera reboots, a Pi camera cable is reseated)."""
    if finding.level != "error":
        return False
    waits_for_it = isinstance(config.source, (Picamera2SourceConfig, V4l2SourceConfig, RtspSourceConfig))
    return not (waits_for_it and finding.key.split(".", 1)[0] == "source")


def _models(config: Config) -> Iterator[Finding]:
    """Every model file this config loads is present and matches the manifest (a read, no load)."""
    models, switches = config.models, config.attributes
    keys = ["detector" if models.detector_input == 512 else f"detector_{models.detector_input}"]
    keys += ["age_gender"] if switches.age or switches.gender else []
    keys += ["expression"] if switches.expression else []
    keys += ["ethnicity"] if switches.ethnicity else []
    try:
        manifest = Manifest(models.dir)
        for model_key in keys:
            manifest.info(model_key, models.variant)
        manifest.anchors(keys[0])  # the detector's box priors are checked against the manifest too
    except ModelError as exc:
        yield Finding("error", "models.dir" if models.variant == "int8" else "models.variant", str(exc))


# --------------------------------------------------------------------------- helpers


def _show(value: Any) -> str:
    return repr(str(value)) if isinstance(value, Path) else repr(value)


def _finding(level: Level, key: str, value: Any, expected: str, why: str, fix: str = "") -> Finding:
    """``expected X, got VALUE (why)[; fix]`` -- the shape of ``ConfigError`` messages."""
    return Finding(level, key, f"expected {expected}, got {_show(value)} ({why})" + (f"; {fix}" if fix else ""))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid {os.getuid()}"


def _denied(key: str, path: Path | str, need: str) -> Finding:
    return _finding(
        "warning",
        key,
        path,
        f"a file {need} by the service",
        f"not {need} by user {_user()}",
        "fine if the service runs as a user who may; otherwise fix the owner or mode",
    )


def _existing_file(key: str, path: Path, expected: str) -> Finding | None:
    """None if ``path`` is a readable regular file, else what is wrong with it."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return _finding("error", key, path, expected, "no such file")
    except PermissionError:
        return _denied(key, path, "readable")
    except OSError as exc:
        return _finding("error", key, path, expected, exc.strerror or str(exc))
    if stat.S_ISDIR(st.st_mode):
        return _finding("error", key, path, expected, "a folder")
    if not stat.S_ISREG(st.st_mode):
        return _finding("error", key, path, expected, "not a regular file")
    if not os.access(path, os.R_OK):
        return _denied(key, path, "readable")
    return None


def _lookup(host: str, port: int, timeout_s: float) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` with a deadline (it has none of its own; a dead resolver can take 30 s)."""
    box: list[list[tuple[Any, ...]] | OSError] = []

    def resolve() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            box.append(exc)

    worker = threading.Thread(target=resolve, name="preflight-dns", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not box:
        raise TimeoutError(f"no answer from the name resolver within {timeout_s:g} s")
    if isinstance(box[0], OSError):
        raise box[0]
    return box[0]


def unreachable(host: str, port: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """None if a TCP connection to ``host:port`` opens (then it is closed at once), else why not."""
    deadline = time.monotonic() + timeout_s
    try:
        addresses = _lookup(host, port, timeout_s)
    except socket.gaierror as exc:
        return f"the name does not resolve: {exc.strerror or exc}"
    except OSError as exc:  # TimeoutError from the resolver thread included
        return f"the name does not resolve: {exc}"
    last: OSError | None = None
    for family, kind, proto, _, address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(address)
            return None
        except OSError as exc:
            last = exc
    if isinstance(last, ConnectionRefusedError):
        return f"connection to port {port} refused: nothing listens there"
    if last is None or isinstance(last, TimeoutError):
        return f"no answer on port {port} within {timeout_s:g} s (host down or a firewall?)"
    return f"port {port}: {last.strerror or last}"


# --------------------------------------------------------------------------- sources


@register_check(FileSourceConfig)
def _file_source(cfg: FileSourceConfig, key: str, options: Options) -> Iterator[Finding]:
    """Decode one frame the way ``FileSource`` opens the file."""
    key, expected = f"{key}.path", "a video (or image) file OpenCV can decode"
    problem = _existing_file(key, cfg.path, expected)
    if problem is not None:
        yield problem
        return
    cap = cv2.VideoCapture(str(cfg.path))
    try:
        if not cap.isOpened():
            yield _finding("error", key, cfg.path, expected, "OpenCV cannot open it: not a video, or damaged")
        elif not cap.read()[0]:
            yield _finding("error", key, cfg.path, expected, "it opens but no frame decodes: empty or damaged")
    finally:
        cap.release()


@register_check(Picamera2SourceConfig)
def _picamera2_source(cfg: Picamera2SourceConfig, key: str, options: Options) -> Iterator[Finding]:
    """Import only: the module must load; the camera itself is not opened (it may be in use)."""
    try:
        importlib.import_module("picamera2")
    except Exception as exc:  # ImportError, or picamera2 present but its libcamera bindings fail to load
        yield _finding(
            "error",
            f"{key}.type",
            cfg.type,
            "the picamera2 Python module to be importable",
            f"{type(exc).__name__}: {exc}",
            PICAMERA2_INSTALL,
        )


@register_check(V4l2SourceConfig)
def _v4l2_source(cfg: V4l2SourceConfig, key: str, options: Options) -> Iterator[Finding]:
    """The device node must exist; it is not opened (a running daemon may hold it)."""
    key, path = f"{key}.device", V4l2Source(cfg).device_path
    expected = "an existing V4L2 camera device"
    hint = "is the camera plugged in? `v4l2-ctl --list-devices` lists cameras"
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        yield _finding("error", key, path, expected, "no such device", hint)
        return
    except OSError as exc:
        yield _finding("error", key, path, expected, exc.strerror or str(exc), hint)
        return
    if not stat.S_ISCHR(st.st_mode):
        yield _finding("error", key, path, expected, "not a character device", hint)
    elif os.major(st.st_rdev) != _V4L2_MAJOR:
        yield _finding("error", key, path, expected, f"device major {os.major(st.st_rdev)} is not video4linux", hint)
    elif not os.access(path, os.R_OK | os.W_OK):
        yield _finding(
            "warning",
            key,
            path,
            "a camera the service may open",
            f"user {_user()} may not open it",
            "add the service user to the 'video' group",
        )


@register_check(RtspSourceConfig)
def _rtsp_source(cfg: RtspSourceConfig, key: str, options: Options) -> Iterator[Finding]:
    """A TCP probe of the stream's host only: opening the stream is left to ``edge run``, which retries."""
    parts = urlsplit(cfg.url)
    port = parts.port or _STREAM_PORTS[parts.scheme.lower()]
    why = unreachable(parts.hostname or "", port, options.timeout_s)
    if why is not None:
        yield _finding(
            "warning",
            f"{key}.url",
            redact_url(cfg.url),
            "a reachable stream host",
            why,
            "`edge run` keeps retrying, so this may be transient",
        )


# --------------------------------------------------------------------------- sinks


def _writable_target(key: str, path: Path, expected: str) -> Finding | None:
    """None if ``path`` can be created or appended to (its folders are created by the sink)."""
    try:
        if path.is_dir():
            return _finding("error", key, path, expected, "a folder")
        if path.exists():
            return None if os.access(path, os.W_OK) else _denied(key, path, "writable")
        folder = next(p for p in path.parents if p.exists())
    except PermissionError:  # a folder on the way may not be searched by this user
        return _denied(key, path, "writable")
    if not folder.is_dir():
        return _finding("error", key, path, expected, f"{folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        return _denied(key, folder, "writable")
    return None


@register_check(JsonlSinkConfig)
def _jsonl_sink(cfg: JsonlSinkConfig, key: str, options: Options) -> Iterator[Finding]:
    if not cfg.to_stdout:
        problem = _writable_target(f"{key}.path", Path(cfg.path), '"-" or a file path the sink can append to')
        if problem is not None:
            yield problem


@register_check(MqttSinkConfig)
def _mqtt_sink(cfg: MqttSinkConfig, key: str, options: Options) -> Iterator[Finding]:
    """TLS material must load (an error: paho gives up); the broker is probed (a warning: paho retries)."""
    if cfg.tls is not None:
        yield from _tls(cfg.tls, f"{key}.tls")
    why = unreachable(cfg.host, cfg.port, options.timeout_s)
    if why is not None:
        yield _finding(
            "warning",
            f"{key}.host",
            cfg.host,
            f"an MQTT broker accepting connections on port {cfg.port}",
            why,
            "`edge run` spools windows and keeps reconnecting, so this may be transient",
        )


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc).replace("_", " ").lower()


def _loads_as_certificates(path: Path) -> ssl.SSLError | None:
    """None if ``path`` parses as PEM certificates (into a throwaway context), else the error."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        return exc
    return None


def _tls(tls: TlsConfig, key: str) -> Iterator[Finding]:
    """Load the CA bundle and client pair with ``ssl`` the way the MQTT sink will."""
    if tls.ca_file is not None:
        expected = "a PEM file of CA certificates"
        problem = _existing_file(f"{key}.ca_file", tls.ca_file, expected)
        if problem is not None:
            yield problem
        elif (exc := _loads_as_certificates(tls.ca_file)) is not None:
            yield _finding("error", f"{key}.ca_file", tls.ca_file, expected, _ssl_reason(exc))
    if tls.cert_file is None or tls.key_file is None:
        return
    problems = [
        _existing_file(f"{key}.cert_file", tls.cert_file, "a PEM client certificate"),
        _existing_file(f"{key}.key_file", tls.key_file, "a PEM private key"),
    ]
    found = [p for p in problems if p is not None]
    if found:
        yield from found
        return
    yield from _client_pair(tls.cert_file, tls.key_file, key)


def _client_pair(cert: Path, private_key: Path, key: str) -> Iterator[Finding]:
    asked_passphrase = False

    def passphrase() -> str:
        # Without this OpenSSL would prompt on the terminal; the sink has no passphrase setting.
        nonlocal asked_passphrase
        asked_passphrase = True
        return ""

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(cert), str(private_key), password=passphrase)
        return
    except ssl.SSLError as exc:
        error = exc
    if asked_passphrase:
        yield _finding(
            "error",
            f"{key}.key_file",
            private_key,
            "an unencrypted PEM private key (the sink has no passphrase setting)",
            "the key is encrypted",
            f"decrypt it once: `openssl pkey -in {private_key} -out <new file>` (mode 0600)",
        )
    elif error.reason == "KEY_VALUES_MISMATCH":
        yield _finding("error", f"{key}.key_file", private_key, f"the private key of {cert}", "a different key")
    elif (cert_error := _loads_as_certificates(cert)) is not None:
        yield _finding("error", f"{key}.cert_file", cert, "a PEM client certificate", _ssl_reason(cert_error))
    else:
        yield _finding("error", f"{key}.key_file", private_key, "a PEM private key", _ssl_reason(error))
