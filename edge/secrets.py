"""Passwords and TLS material, declared and read the same way by the device and the fleet side.

A password never sits in a config file: a section names where to read it (a file, an environment
variable or a systemd credential) and it is read when a connection is made, so it is never kept
in a config object that may be logged. TLS files are checked the way the connection will load
them, so ``edge check`` and the running service agree on what is wrong.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.checks import Finding, existing_file, finding
from edge.config.errors import ConfigError
from edge.config.fields import boolean, file_path, leaf, optional, text

PASSWORD_SOURCES = ("password_file", "password_env", "password_credential")
NO_CLEAR_PASSWORD = {
    "password": "no clear-text password in the config file; use password_file, "
    "password_env or password_credential (a systemd credential)",
}


# Each section that takes a password declares these three keys (in its own key order) with these
# functions, and calls ``password_problems`` from its ``_problems``.
def password_file_field() -> Any:
    return leaf(None, optional(file_path("a file holding the password")))


def password_env_field() -> Any:
    return leaf(None, optional(text("an environment variable name", r"[A-Za-z_][A-Za-z0-9_]*")))


def password_credential_field() -> Any:
    return leaf(None, optional(text("a systemd credential name", r"[A-Za-z0-9_.@-]+")))


def password_problems(section: Any) -> Iterator[tuple[str, Any, str]]:
    """At most one password source, and a user name with it (``_problems`` of a section that has them)."""
    given = [k for k in PASSWORD_SOURCES if getattr(section, k) is not None]
    if len(given) > 1:
        yield given[1], getattr(section, given[1]), f"only one of {', '.join(PASSWORD_SOURCES)} (also got {given[0]})"
    if given and section.username is None:
        yield "username", None, f"a user name when {given[0]} is set"


def read_password(section: Any, key: str) -> str | None:
    """The password named by ``section``'s password_file/_env/_credential (None when none is set);
    a ``ConfigError`` names the key as ``<key>.password_...`` when it cannot be read."""
    if section.password_file is not None:
        return _read_secret(f"{key}.password_file", section.password_file)
    if section.password_env is not None:
        value = os.environ.get(section.password_env)
        if value is None:
            raise ConfigError(
                f"{key}.password_env",
                section.password_env,
                "the name of a set environment variable",
                got=f"{section.password_env} (not set)",
            )
        return value
    if section.password_credential is not None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise ConfigError(
                f"{key}.password_credential",
                section.password_credential,
                "to run under systemd with LoadCredential=/SetCredential= (CREDENTIALS_DIRECTORY is not set)",
            )
        return _read_secret(f"{key}.password_credential", Path(creds) / section.password_credential)
    return None


def _read_secret(key: str, file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            key, str(file), "a readable file holding the password", got=f"{file} ({exc.strerror or exc})"
        ) from exc


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """TLS to a broker; ``ca_file: null`` trusts the system CAs. ``insecure`` skips the host name
    check only (never the chain): for testing."""

    ca_file: Path | None = leaf(None, optional(file_path("a CA bundle file"), "system CAs"))
    cert_file: Path | None = leaf(None, optional(file_path("a client certificate file")))
    key_file: Path | None = leaf(None, optional(file_path("a client key file")))
    insecure: bool = leaf(False, boolean())

    def _problems(self) -> Iterator[tuple[str, Any, str]]:
        if (self.cert_file is None) != (self.key_file is None):
            yield "key_file", self.key_file, "cert_file and key_file to be given together"


class TlsError(RuntimeError):
    """TLS material that cannot be loaded; the message names the file."""


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """A verifying client context (CERT_REQUIRED, host name checked unless ``insecure``)."""
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"TLS CA file {tls.ca_file} cannot be loaded: {exc}") from exc
    if (tls.cert_file is None) != (tls.key_file is None):
        raise TlsError("TLS: cert_file and key_file must be given together")
    if tls.cert_file is not None:
        try:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(
                f"TLS client certificate {tls.cert_file} / key {tls.key_file} cannot be loaded: {exc}"
            ) from exc
    if tls.insecure:
        ctx.check_hostname = False
    return ctx


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc).replace("_", " ").lower()


def _loads_as_certificates(file: Path) -> ssl.SSLError | None:
    """None if ``file`` parses as PEM certificates (into a throwaway context), else the error."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(file))
    except ssl.SSLError as exc:
        return exc
    return None


def tls_findings(tls: TlsConfig, key: str) -> Iterator[Finding]:
    """Load the CA bundle and client pair with ``ssl`` the way ``tls_context`` will (``edge check``)."""
    if tls.ca_file is not None:
        expected = "a PEM file of CA certificates"
        problem = existing_file(f"{key}.ca_file", tls.ca_file, expected)
        if problem is not None:
            yield problem
        elif (exc := _loads_as_certificates(tls.ca_file)) is not None:
            yield finding("error", f"{key}.ca_file", tls.ca_file, expected, _ssl_reason(exc))
    if tls.cert_file is None or tls.key_file is None:
        return
    problems = [
        existing_file(f"{key}.cert_file", tls.cert_file, "a PEM client certificate"),
        existing_file(f"{key}.key_file", tls.key_file, "a PEM private key"),
    ]
    found = [p for p in problems if p is not None]
    if found:
        yield from found
        return
    yield from _client_pair(tls.cert_file, tls.key_file, key)


def _client_pair(cert: Path, private_key: Path, key: str) -> Iterator[Finding]:
    asked_passphrase = False

    def passphrase() -> str:
        # Without this OpenSSL would prompt on the terminal; there is no passphrase setting.
        nonlocal asked_passphrase
        asked_passphrase = True
        return ""

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(cert), str(private_key), password=passphrase)
        return
    except ssl.SSLError as exc:
        error = exc
    if asked_passphrase:
        yield finding(
            "error",
            f"{key}.key_file",
            private_key,
            "an unencrypted PEM private key (the sink has no passphrase setting)",
            "the key is encrypted",
            f"decrypt it once: `openssl pkey -in {private_key} -out <new file>` (mode 0600)",
        )
    elif error.reason == "KEY_VALUES_MISMATCH":
        yield finding("error", f"{key}.key_file", private_key, f"the private key of {cert}", "a different key")
    elif (cert_error := _loads_as_certificates(cert)) is not None:
        yield finding("error", f"{key}.cert_file", cert, "a PEM client certificate", _ssl_reason(cert_error))
    else:
        yield finding("error", f"{key}.key_file", private_key, "a PEM private key", _ssl_reason(error))
