"""Shared fixtures: real images from Ultralytics' assets, the shared real data set."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from ci_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401 (hooks)

pytest_plugins = ("pytester",)  # tests/test_suite_rules.py runs pytest on small suites
REPO = Path(__file__).resolve().parents[1]
# evaluation jobs of the test servers persist here, not in the checkout's runs/jobs
os.environ.setdefault("LGM_POSE_JOBS_DIR", tempfile.mkdtemp(prefix="lgm_pose_test_jobs_"))
# the suite's servers run LGM-Pose's path unless a test names a source: the batching, backend, stream and metrics
# tests are about it; the served default (`detector`) and every source are tested in tests/test_pose_sources.py
os.environ.setdefault("LGM_POSE_POSE_SOURCE", "lgm")

def _data_root() -> Path:
    """LGM_POSE_DATA_ROOT, else ../shared/data beside the checkout, else this workplace's /work/shared/data."""
    if "LGM_POSE_DATA_ROOT" in os.environ:
        return Path(os.environ["LGM_POSE_DATA_ROOT"]).resolve()
    for candidate in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if (candidate / "README.md").exists():
            return candidate.resolve()
    return (REPO.parent / "shared" / "data").resolve()


DATA_ROOT = _data_root()


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


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the coco_256x192 network at random initial weights (tests that need no training)."""
    from model.nn.checkpoint import save_checkpoint
    from model.nn.network import build_model

    path = tmp_path_factory.mktemp("weights") / "lgm_pose_random.pt"
    save_checkpoint(path, build_model("coco_256x192"), {"note": "random init, test only"})
    return path
