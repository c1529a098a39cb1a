"""Shared fixtures: real photos that ship with packages (no data committed)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """NASA's public-domain astronaut portrait (Eileen Collins), shipped by scikit-image. RGB uint8."""
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.astronaut()[..., :3])


# Real-mosquitto fixtures for the MQTT sink tests (see tests/mqtt_broker.py).
from mqtt_broker import broker_factory, mqtt_broker, tls_files  # noqa: E402,F401
from mqtt_clients import sink_log, subscribers  # noqa: E402,F401

try:  # the fleet tests' PostgreSQL fixtures; the tflite-runtime venv (model tests only) has no psycopg
    import psycopg  # noqa: F401
except ImportError:
    pass
else:
    from pg_database import pg_database, pg_databases  # noqa: F401
