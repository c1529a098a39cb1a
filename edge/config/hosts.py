"""Checks for network endpoints in configs (a broker host), shared by the device and the fleet side."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from edge.config.fields import Ctx, Invalid

HOST = "a broker host name or IP address"
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")


def broker_host(v: Any, ctx: Ctx) -> str:
    """A host for ``getaddrinfo``: an IP literal or an RFC 1123 name (``_`` tolerated, as Docker uses it).

    Caught here rather than at connect time because paho would only retry a URL or a
    typo forever with a "name not known" in the log.
    """
    if not isinstance(v, str) or not v:
        raise Invalid
    if "://" in v:
        parts = urlsplit(v)
        secure = parts.scheme.lower() in ("mqtts", "ssl", "tls", "wss", "https")
        keys = [f"port: {parts.port}"] if parts.port else []
        keys += ["tls: true"] if secure else []
        raise Invalid(
            f"only the broker host, not a URL: host: {parts.hostname or '<name>'!r}"
            f" (set port and tls as keys of their own{': ' + ', '.join(keys) if keys else ''})"
        )
    try:
        ipaddress.ip_address(v)  # also IPv6 with a zone, e.g. fe80::1%eth0
        return v
    except ValueError:
        pass
    if v.startswith("[") and v.endswith("]"):
        raise Invalid(f"{HOST}; write an IPv6 address without brackets, e.g. '::1'")
    if not v.isascii() or not v.isprintable():
        raise Invalid(f"{HOST} in printable ASCII (an internationalised name in its xn-- punycode form)")
    if v.count(":") == 1 or "/" in v:
        raise Invalid(f"{HOST} only, e.g. {re.split('[:/]', v)[0]!r}; set the port with port:")
    name = v[:-1] if v.endswith(".") else v  # a trailing dot marks a fully qualified name
    if len(name) > 253:
        raise Invalid(f"{HOST} of at most 253 characters")
    labels = name.split(".")
    if "" in labels:
        raise Invalid(f"{HOST} without empty labels (no '..', no leading dot)")
    if any(len(label) > 63 for label in labels):
        raise Invalid(f"{HOST} whose labels (the parts between dots) have at most 63 characters")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise Invalid(f"{HOST} of letters, digits and '-' (not at either end of a label)")
    if re.fullmatch(r"[0-9.]+", name):
        raise Invalid("an IPv4 address of four numbers 0..255, or a host name")
    return v
