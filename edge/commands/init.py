"""``edge init``: a minimal, valid config for the parts a user picked, to start from.

Only what the user must decide is written (device id, site, source, sink); every other key keeps
its default and is listed, with its meaning, in ``edge/config.example.yaml``. The result is parsed
with the daemon's own validation before it is written, so it never needs fixing.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
from pathlib import Path
from typing import Any, TextIO

from edge.commands.options import Subparsers, add_command

SOURCES = ("picamera2", "v4l2", "rtsp", "file")
SINKS = ("mqtt", "jsonl")

_HEADER = """\
# Made by `edge init`. Only what you must decide is here; every other key keeps its default
# (all of them, with their meaning, in edge/config.example.yaml). Check it with `edge check --config`.
"""


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "init", "write a minimal valid config for your camera and sink (stdout or -o)")
    p.add_argument("--source", choices=SOURCES, required=True)
    p.add_argument("--sink", choices=SINKS, default="jsonl", help="default: jsonl (windows on stdout)")
    p.add_argument("--path", type=Path, help="--source file: the video")
    p.add_argument("--url", help="--source rtsp: the stream URL")
    p.add_argument("--device", help="--source v4l2: index or /dev path (default: 0)")
    p.add_argument("--host", default="localhost", help="--sink mqtt: the broker (default: localhost)")
    p.add_argument("--port", type=int, help="--sink mqtt: the broker's port (default: 1883, 8883 with TLS)")
    p.add_argument("--device-id", help="letters, digits, '_' or '-' (default: this machine's host name)")
    p.add_argument("--site", default="default", help="a label for where the device is")
    p.add_argument("-o", "--output", type=Path, help="write here (refuses to overwrite); default: stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    doc = build(
        args.source,
        args.sink,
        device_id=args.device_id,
        site=args.site,
        path=None if args.path is None else args.path.resolve(),  # the config may be written elsewhere
        url=args.url,
        device=args.device,
        host=args.host,
        port=args.port,
    )
    return write(doc, args.output)


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


def write(doc: dict[str, Any], output: Path | None, out: TextIO | None = None) -> int:
    """Validate ``doc`` as the daemon would, then write it to ``output`` (stdout when None)."""
    import yaml  # here, not at the top: every command's parser imports this module

    from edge.settings import parse_config

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
