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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from edge.commands.options import Subparsers, add_command

_HEADER = """\
# Made by `edge init`. Only what you must decide is here; every other key keeps its default
# (all of them, with their meaning, in edge/config.example.yaml). Check it with `edge check --config`.
"""


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "init", "write a minimal valid config for your camera and sink (stdout or -o)")
    # Types are not listed here: they are the plugins in edge/sources and edge/sinks, and a wrong
    # one is refused with the known ones, in the daemon's own words.
    p.add_argument("--source", required=True, help="the source type: picamera2, v4l2, rtsp, file, ...")
    p.add_argument("--sink", default="jsonl", help="the sink type: jsonl (default: windows on stdout), mqtt, ...")
    p.add_argument("--path", type=Path, help="--source file: the video")
    p.add_argument("--url", help="--source rtsp: the stream URL")
    p.add_argument("--device", help="--source v4l2: index or /dev path (default: 0)")
    p.add_argument("--host", help="--sink mqtt: the broker (default: localhost)")
    p.add_argument("--port", type=int, help="--sink mqtt: the broker's port (default: 1883, 8883 with TLS)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="any other key of the source or sink, e.g. --set source.camera=1 (repeatable; the value is YAML)",
    )
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
        settings=args.set,
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
    host: str | None = None,
    port: int | None = None,
    settings: Sequence[str] = (),
) -> dict[str, Any]:
    """The config as a mapping: the chosen types, and only the keys given (the daemon's validation,
    in ``write``, names what a type still needs); ``ValueError`` for a ``--set`` it cannot read."""
    import yaml  # here, not at the top: every command's parser imports this module

    doc: dict[str, Any] = {"device_id": device_id or default_device_id(), "site": site}
    given = {"path": None if path is None else str(path), "url": url, "device": device}
    doc["source"] = {"type": source, **{k: v for k, v in given.items() if v is not None}}
    if device is not None:
        doc["source"]["device"] = int(device) if device.isdigit() else device
    doc["sink"] = {"type": sink, **({"host": host} if host is not None else {}), **({"port": port} if port else {})}
    if sink == "jsonl":
        doc["sink"].setdefault("path", "-")
    for item in settings:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not (sep and dot and name) or section not in ("source", "sink"):
            raise ValueError(f"--set {item!r}: expected source.KEY=VALUE or sink.KEY=VALUE")
        doc[section][name] = yaml.safe_load(value)
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
