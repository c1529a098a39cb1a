"""Shared fixtures: real photos that ship with packages (no data committed)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """NASA's public-domain astronaut portrait (Eileen Collins), shipped by scikit-image. RGB uint8."""
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.astronaut()[..., :3])
