"""The one mosquitto launcher of the tests: a real broker on a free 127.0.0.1 port that a test can
stop, kill and restart, with the variants as parameters (passwords, TLS, an ACL, persistence).

Using the real broker (not a mock) is the point: reconnects, retained
messages, Last Will, PUBACK timing, TLS and password refusal are exactly the
behaviour the MQTT sink must survive. Tests get brokers through the conftest fixtures
(``mqtt_broker``, ``broker_factory``); tests/ha/check_ha.py, a script, makes a ``Broker`` itself.
No pytest here, so that script can import it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from polling import poll

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
HOST = "127.0.0.1"
MOSQUITTO_MISSING = "" if os.access(MOSQUITTO, os.X_OK) else f"mosquitto not found at {MOSQUITTO}"


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` now."""
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

    def start(self, timeout: float = 30.0) -> None:
        """Start mosquitto and return once every listener accepts TCP connections."""
        assert not self.running, "broker already running"
        with self.log_path.open("ab") as logf:
            proc = self._proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf_path)], stdout=logf, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        ports = [p for p in (self.port, self.tls_port) if p is not None]

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {proc.returncode}:\n{self.log()}")
            return all(accepts(p) for p in ports)

        if not poll(listening, timeout, interval=0.02):
            raise RuntimeError(f"mosquitto did not listen on {ports} within {timeout} s:\n{self.log()}")

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
