"""``edge forget``: remove the device from Home Assistant and its broker (retained discovery, status, health)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.commands.options import Subparsers, add_command


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers,
        "forget",
        "remove the device from Home Assistant and the broker (retained discovery, status, health); "
        "stop its daemon first",
    )
    p.add_argument("--config", type=Path, required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Clear the device's retained discovery configs, status and health from its broker."""
    from edge.settings import load_config
    from edge.sinks.forget import forget_device
    from edge.sinks.mqtt import MqttSinkConfig
    from edge.state_lock import StateDirBusy, StateLock

    config = load_config(args.config)
    if not isinstance(config.sink, MqttSinkConfig):
        raise ValueError(f"{args.config}: sink.type is {type(config.sink).type!r}; forget needs an mqtt sink")
    # A running daemon would announce the device again at its next reconnect: stop it first.
    lock = StateLock(config.state_dir)
    if config.state_dir.is_dir():  # no state directory: no daemon ever ran with this config here
        try:
            lock.acquire()
        except StateDirBusy as exc:
            if lock.holder is None:
                raise
            raise StateDirBusy(
                f"the edge daemon (pid {lock.holder}) is running with state directory {config.state_dir}: it would "
                "announce the device again; stop it first (e.g. systemctl stop edge), then forget the device"
            ) from exc
    try:
        cleared = forget_device(config.sink, config.device_id)
    finally:
        lock.release()
    sys.stdout.write(
        f"{config.device_id}: cleared {len(cleared)} retained message(s) on {config.sink.host}:{config.sink.port}"
        + "".join(f"\n  {topic}" for topic in cleared)
        + "\n"
    )
    return 0
