"""``edge init``: a minimal, valid config for the parts a user picked, to start from.

Only what the user must decide is written (device id, site, source, sink); every other key keeps
its default and is listed, with its meaning, in ``edge/config.example.yaml``. The result is parsed
with the daemon's own validation before it is written, so it never needs fixing.
"""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from edge.settings import parse_config

SOURCES = ("picamera2", "v4l2", "rtsp", "file")
SINKS = ("mqtt", "jsonl")

_HEADER = """\
# Made by `edge init`. Only what you must decide is here; every other key keeps its default
# (all of them, with their meaning, in edge/config.example.yaml). Check it with `edge check --config`.
"""


def default_device_id() -> str:
    """This machine's host name as a device id (letters, digits, '_' and '-', at most 64)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname().split(".")[0]).strip("-")[:64]
    return name or "edge-1"


def build(
    source: str,
    sink: str,
    *,
    device_id: str | None = None,
    site: str = "default",
    path: Path | None = None,
    url: str | None = None,
    device: str | None = None,
    host: str = "localhost",
    port: int | None = None,
    out_path: str = "-",
) -> dict[str, Any]:
    """The config as a mapping; ``ValueError`` naming the option a choice still needs."""
    doc: dict[str, Any] = {"device_id": device_id or default_device_id(), "site": site}
    if source == "file":
        if path is None:
            raise ValueError("--source file needs --path VIDEO")
        doc["source"] = {"type": "file", "path": str(path)}
    elif source == "rtsp":
        if url is None:
            raise ValueError("--source rtsp needs --url rtsp://HOST/STREAM")
        doc["source"] = {"type": "rtsp", "url": url}
    elif source == "v4l2":
        doc["source"] = {"type": "v4l2", "device": int(device) if device and device.isdigit() else device or 0}
    else:
        doc["source"] = {"type": source}
    if sink == "mqtt":
        doc["sink"] = {"type": "mqtt", "host": host, **({"port": port} if port is not None else {})}
    else:
        doc["sink"] = {"type": "jsonl", "path": out_path}
    return doc


def run(doc: dict[str, Any], output: Path | None, out: TextIO | None = None) -> int:
    """Validate ``doc`` as the daemon would, then write it to ``output`` (stdout when None)."""
    out = out or sys.stdout
    parse_config(doc, source="edge init")  # the user's values (device id, site, URL) in the daemon's own words
    text = _HEADER + yaml.safe_dump(doc, sort_keys=False)
    if output is None:
        out.write(text)
        return 0
    if output.exists():
        raise ValueError(f"{output} exists; edge init does not overwrite a config (remove it, or pick another -o)")
    output.write_text(text)
    out.write(f"{output}: written; next: edge check --config {output}\n")
    return 0
