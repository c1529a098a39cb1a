"""The MQTT sink's log lines: paho's reason codes, disconnect flags and socket errors in words an
operator can act on.

A device runs unattended; its log is often the only way to learn why nothing arrives. Every
failure is logged once, at the level that fits, naming the broker and the likely fix (the
config key to set, the broker ACL to change, two devices sharing an id) instead of a bare code.
These functions only phrase; the sink decides when to log.
"""

from __future__ import annotations

import logging
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge.secrets import TlsConfig

_paho_log = logging.getLogger("edge.sinks.mqtt.paho")

_REFUSED_CREDENTIALS = {134, 135}  # MQTT 5 reason codes; paho maps 3.1.1 CONNACK 4/5 onto them
_SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT: another client connected with this client id
_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH


def connect_refused(where: str, reason_code: ReasonCode, username: str | None) -> str:
    """A CONNACK with a failure reason (an error: paho retries, but someone must fix something)."""
    hint = ""
    if reason_code.value in _REFUSED_CREDENTIALS:
        if username is None:
            hint = "; the broker wants credentials: set sink.username and a password"
        else:
            hint = f"; check the MQTT user name ({username!r}) and password"
    return (
        f"MQTT broker {where} refused the connection: {reason_code} (reason code {reason_code.value}){hint}; "
        "retrying with backoff"
    )


def connect_failed(
    exc: BaseException | None, *, where: str, host: str, port: int, tls: TlsConfig | None, reconnect_max_s: float
) -> tuple[int, str]:
    """(log level, line) for a connection attempt that failed before MQTT spoke (``exc`` is the
    socket or TLS error paho caught): a rejected certificate or a failed TLS handshake is an
    error, anything else (the broker is down, the network is) a warning."""
    retry = f"retrying with backoff (up to {reconnect_max_s:g} s)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        ca = f"CA file {tls.ca_file}" if tls is not None and tls.ca_file else "the system CA store"
        hint = ""
        if exc.verify_code == _HOSTNAME_MISMATCH or "hostname" in str(exc.verify_message).lower():
            hint = f" (the certificate does not name host {host!r})"
        return logging.ERROR, (
            f"MQTT TLS to {where} failed: broker certificate rejected (certificate verify failed: "
            f"{exc.verify_message or exc.reason}){hint}; trusted CAs: {ca}; {retry}"
        )
    if tls is not None and isinstance(exc, (ssl.SSLError, ConnectionResetError, ConnectionAbortedError)):
        plain = isinstance(exc, (ssl.SSLEOFError, ConnectionResetError, ConnectionAbortedError))
        hint = f"; is port {port} a TLS listener? A plain MQTT port closes a TLS handshake" if plain else ""
        trusted = tls.ca_file if tls.ca_file else "system CA store"
        return logging.ERROR, f"MQTT TLS handshake with {where} failed: {exc} (CA: {trusted}){hint}; {retry}"
    return logging.WARNING, f"cannot connect to MQTT broker {where}: {exc or 'connection failed'}; {retry}"


def disconnect_cause(flags: mqtt.DisconnectFlags, reason_code: ReasonCode, *, device_id: str, keepalive: int) -> str:
    """Why a connection ended."""
    if flags.is_disconnect_packet_from_server:
        text = f"the broker closed it: {reason_code} (reason code {reason_code.value})"
        if reason_code.value == _SESSION_TAKEN_OVER:
            text += (
                f"; another client connected with the client id {device_id!r}: two devices or two "
                "daemons share this device_id"
            )
        return text
    if str(reason_code) == "Keep alive timeout":
        return (
            f"no reply from the broker within the keepalive ({keepalive} s): "
            "the network or the broker stopped answering"
        )
    return (
        "the connection was closed or reset (the network, a broker restart, or another client connecting "
        f"with the client id {device_id!r}: two devices or two daemons sharing a device_id)"
    )


def disconnected(
    was_connected: bool,
    flags: mqtt.DisconnectFlags,
    reason_code: ReasonCode,
    *,
    where: str,
    device_id: str,
    keepalive: int,
    port: int,
    tls: bool,
    reconnect_max_s: float,
) -> str:
    """A connection lost, or one that never got as far as a CONNACK (a warning: paho reconnects)."""
    cause = disconnect_cause(flags, reason_code, device_id=device_id, keepalive=keepalive)
    if was_connected:
        return f"lost connection to MQTT broker {where}: {cause}; windows are spooled, reconnecting with backoff"
    hint = ""
    if not tls and not flags.is_disconnect_packet_from_server:
        hint = f" (if port {port} is a TLS listener, configure sink.tls)"
    return (
        f"MQTT broker {where} did not complete the connection: {cause}{hint}; "
        f"retrying with backoff (up to {reconnect_max_s:g} s)"
    )


def publish_refused(reason_code: ReasonCode) -> str:
    """The reason a PUBACK gives for refusing a window."""
    return f"{reason_code} (reason code {reason_code.value})"


def window_refused(where: str, seq: int, topic: str, reason: str, retry_s: float) -> str:
    """A window newly held back (an error: it needs a change on the broker or in the config)."""
    return (
        f"MQTT broker {where} refused window seq {seq} on {topic}: {reason}; it stays in the spool and is "
        f"offered again every {retry_s:g} s and on every reconnect, later windows wait behind it (allow this "
        f"client to publish to {topic}, e.g. in the broker's ACL, or change sink.topic_prefix)"
    )


def window_accepted(where: str, seq: int, refused_for_s: float) -> str:
    return (
        f"MQTT broker {where} accepted window seq {seq} after refusing it for {refused_for_s:.0f} s; "
        "the windows behind it follow"
    )


def not_read_back(timeout_s: float, topic: str) -> str:
    """Why an acknowledged MQTT 3.1.1 window that did not come back counts as refused."""
    return (
        f"acknowledged but not read back within {timeout_s:g} s: over MQTT 3.1.1 a broker acknowledges a "
        f"publish its ACL drops; if this client may publish but not read {topic}, grant read access or set "
        "sink.read_back: false"
    )


def read_back_denied(topic: str, reason: str) -> str:
    return (
        f"the broker does not let this device read back its windows on {topic} ({reason}): over MQTT 3.1.1 a "
        "window the broker's ACL drops cannot be told from a delivered one; grant read access to that topic or "
        "use protocol '5'"
    )


NO_READ_BACK = (
    "MQTT 3.1.1 with read_back off: a window the broker's ACL drops is acknowledged and lost "
    "without notice; prefer protocol '5'"
)


def on_paho_log(client: mqtt.Client, userdata: object, level: int, buf: str) -> None:
    """Paho's own log, quieted: it reports "Client is not connected" at ERROR on every loop pass while
    offline, and the sink already logs each failure once with its cause; that stays at DEBUG."""
    if level == mqtt.MQTT_LOG_ERR and "not connected" not in buf:
        _paho_log.error("%s", buf)
    else:
        _paho_log.debug("%s", buf)
