"""A real mosquitto per test, on a free 127.0.0.1 port, that a test can stop, kill and restart.

Using the real broker (not a mock) is the point: reconnects, retained
messages, Last Will, PUBACK timing, TLS and password refusal are exactly the
behaviour the MQTT sink must survive.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
HOST = "127.0.0.1"
MOSQUITTO_MISSING = "" if os.access(MOSQUITTO, os.X_OK) else f"mosquitto not found at {MOSQUITTO}"


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class TlsFiles:
    """A test CA, a broker certificate it signed (for 127.0.0.1 and localhost) and an unrelated CA."""

    ca: Path
    cert: Path
    key: Path
    wrong_ca: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, crt = d / f"{name}.key", d / f"{name}.pem"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        crt,
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )
    return key, crt


def make_tls_files(d: Path) -> TlsFiles:
    """Generate the TLS material with the openssl CLI (no Python crypto dependency)."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _make_ca(d, "test-ca")
    _, wrong_ca = _make_ca(d, "other-ca")
    key, csr, cert, ext = d / "broker.key", d / "broker.csr", d / "broker.pem", d / "broker.ext"
    _openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        ext,
        cwd=d,
    )
    return TlsFiles(ca=ca, cert=cert, key=key, wrong_ca=wrong_ca)


class Broker:
    """One mosquitto process; ``start()`` after ``stop()``/``kill()`` reuses the same port(s)."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        persistence: bool = False,
        acl: str | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port() if tls is not None else None
        self.log_path = workdir / "mosquitto.log"
        self.conf_path = workdir / "mosquitto.conf"
        self._proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"user {getpass.getuser()}",  # as root mosquitto would otherwise switch to user 'mosquitto'
            "log_type all",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            "autosave_interval 0",
            f"listener {self.port} {HOST}",
        ]
        if users:
            pw = workdir / "passwd"
            for i, (user, password) in enumerate(users.items()):
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", *(["-c"] if i == 0 else []), str(pw), user, password],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        self.acl_path = workdir / "acl"
        if acl is not None:
            self.acl_path.write_text(acl)
            lines.append(f"acl_file {self.acl_path}")
        if tls is not None:
            lines += [
                f"listener {self.tls_port} {HOST}",
                f"cafile {tls.ca}",
                f"certfile {tls.cert}",
                f"keyfile {tls.key}",
            ]
            lines.append("allow_anonymous false" if users else "allow_anonymous true")
        # per_listener_settings false (default): allow_anonymous/password_file apply to all listeners.
        self.conf_path.write_text("\n".join(dict.fromkeys(lines)) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto and return once every listener accepts TCP connections."""
        assert not self.running, "broker already running"
        with self.log_path.open("ab") as logf:
            self._proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf_path)], stdout=logf, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        ports = [p for p in (self.port, self.tls_port) if p is not None]
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while not all(_accepts(p) for p in ports):
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen on {ports} within {timeout} s:\n{self.log()}")
            pause.wait(0.02)  # bounded poll between connection attempts

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM); with persistence on, sessions and retained messages are saved."""
        self._end(signal.SIGTERM, timeout)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL: the broker vanishes without closing anything cleanly."""
        self._end(signal.SIGKILL, timeout)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(sig)
            self._proc.wait(timeout=timeout)

    def set_acl(self, acl: str) -> None:
        """Replace the ACL and make the running broker re-read it (SIGHUP), as an operator would."""
        self.acl_path.write_text(acl)
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGHUP)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture()
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """``broker_factory(start=True, users=..., tls=..., persistence=..., acl=...)`` -> a Broker; all are
    killed at teardown."""
    if MOSQUITTO_MISSING:
        pytest.skip(MOSQUITTO_MISSING)
    brokers: list[Broker] = []

    def make(start: bool = True, **kwargs: Any) -> Broker:
        broker = Broker(tmp_path / f"broker{len(brokers)}", **kwargs)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.kill()


@pytest.fixture()
def mqtt_broker(broker_factory: Callable[..., Broker]) -> Broker:
    """A running anonymous broker on a free port."""
    return broker_factory()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    return make_tls_files(tmp_path_factory.mktemp("tls"))
