"""The shipped 16-joint MPII checkpoint, served: its joints and skeleton come from the checkpoint's metadata, and
POST /eval/mpii on the held-out LSPET split (MPII format) answers the CLI's PCKh table exactly."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

from live_server import LiveServer  # noqa: E402
from test_eval_api import eval_mpii_both_ways  # noqa: E402

from app.core.settings import REPO, Settings  # noqa: E402
from model.data.datasets import MPII  # noqa: E402

MPII_WEIGHTS = REPO / "weights" / "lgm_pose_mpii_256x256.pt"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def mpii_root(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    from model.data.mpii_convert import convert_to_mpii

    root = tmp_path_factory.mktemp("mpii_root")
    convert_to_mpii(data_root / "lspet", None, root / "lspet_mpii")
    return root


@pytest.fixture(scope="module")
def server(mpii_root: Path):
    # torch backend: the same forward code as `lgm-pose eval`
    srv = LiveServer(Settings(pose_weights=MPII_WEIGHTS, data_root=mpii_root, backend="torch", device="cpu",
                              max_wait_ms=20, torch_threads=2, jobs_dir=None))
    yield srv
    srv.stop()


def test_the_mpii_model_is_served_with_its_joints(server: LiveServer, bus_path: Path) -> None:
    ready = httpx.get(server.url + "/readyz", timeout=10).json()
    assert ready["model"]["config"] == "mpii_256x256" and ready["model"]["num_joints"] == 16, ready
    r = httpx.post(server.url + "/pose", content=bus_path.read_bytes(), headers={"Content-Type": "image/jpeg"},
                   timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["persons"] and [k["name"] for k in body["persons"][0]["keypoints"]] == list(MPII.joint_names)
    assert [tuple(e) for e in body["skeleton"]] == list(MPII.skeleton)


def test_eval_mpii_on_the_mpii_model_equals_the_cli(server: LiveServer, mpii_root: Path, tmp_path: Path) -> None:
    result, cli, _ = eval_mpii_both_ways(server.url, mpii_root, MPII_WEIGHTS, tmp_path / "mpii.json")
    print(f"\nservice {result['table']}\nCLI     {cli['table']}")
    assert result["model_joints"] == "mpii" and result["unscored_joints"] == []
    assert result["table"]["Head"] is not None  # the MPII model predicts head top and upper neck
    for key in ("table", "per_joint", "limb_mean", "counts", "summary", "head_size"):
        assert result[key] == cli[key], key
    assert result["table"]["Mean"] > 0  # a table with content (the model card has the whole holdout; it is low)
