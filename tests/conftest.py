"""Shared fixtures: real images from Ultralytics' assets, the shared real data set."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("LGM_POSE_DATA_ROOT", REPO.parent / "shared" / "data")).resolve()


def asset(name: str) -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / name


@pytest.fixture(scope="session")
def bus_path() -> Path:
    return asset("bus.jpg")


@pytest.fixture(scope="session")
def zidane_path() -> Path:
    return asset("zidane.jpg")


@pytest.fixture(scope="session")
def bus_image(bus_path: Path) -> np.ndarray:
    return cv2.imread(str(bus_path))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "README.md").exists():
        pytest.skip(f"shared data not found at {DATA_ROOT} (set LGM_POSE_DATA_ROOT)")
    return DATA_ROOT
