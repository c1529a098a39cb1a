"""Shared fixtures: real photos that ship with packages (no data committed), a small real video, and
the tests' one way to a real mosquitto (tests/mqtt_broker.py's ``Broker``: every variant is a parameter of it)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from mqtt_broker import MOSQUITTO_MISSING, Broker, TlsFiles, make_tls_files


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """NASA's public-domain astronaut portrait (Eileen Collins), shipped by scikit-image. RGB uint8."""
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.astronaut()[..., :3])


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    """A real 5-frame MJPG .avi: a file source that opens (for config and ``edge check`` tests)."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture()
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """``broker_factory(start=True, users=..., tls=..., persistence=..., acl=...)`` -> a Broker of this
    test's own (``start=False``: not started yet); all are killed at teardown."""
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


# The MQTT tests' clients (see tests/mqtt_clients.py).
from mqtt_clients import sink_log, subscribers  # noqa: E402,F401

try:  # the fleet tests' PostgreSQL fixtures; the tflite-runtime venv (model tests only) has no psycopg
    import psycopg  # noqa: F401
except ImportError:
    pass
else:
    from pg_database import pg_database, pg_databases  # noqa: F401
