"""The CPU runtime-only install for real: a fresh venv with the project's base dependencies (no torch, torchvision
or Ultralytics) serves the ONNX exports of the full install. POST /pose, the WebSocket stream, an evaluation job
and /metrics answer as the full install's ONNX Runtime service does."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import LiveServer
from websockets.sync.client import connect

from app.core.settings import Settings
from bench.runtime_env import build_runtime_venv, export_models
from bench.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
COCO_MINI = "coco-mini"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, data_root: Path):
    """(runtime server, the exports) : the runtime venv's `lgm-pose serve` on the exported models."""
    tmp = tmp_path_factory.mktemp("runtime")
    pose, detector = export_models(tmp)
    python = build_runtime_venv(tmp / "venv")
    env = {"LGM_POSE_POSE_WEIGHTS": str(pose), "LGM_POSE_DETECTOR_WEIGHTS": str(detector),
           "LGM_POSE_JOBS_DIR": str(tmp / "jobs"), "LGM_POSE_DATA_ROOT": str(data_root)}
    with ServerProcess(env=env, cwd=tmp, python=python) as server:  # cwd: the installed package, not the checkout
        server.python = python
        yield server, pose, detector


def test_runtime_venv_has_no_torch(runtime) -> None:
    server, _, _ = runtime
    for module in ("torch", "torchvision", "ultralytics", "ray"):
        probe = subprocess.run([str(server.python), "-c", f"import {module}"], capture_output=True)
        assert probe.returncode != 0, f"{module} is importable in the runtime venv"
    cwd = server.python.parents[2]  # outside the checkout: the installed package runs
    helped = subprocess.run([str(server.python), "-m", "app.cli", "--help"], capture_output=True, text=True, cwd=cwd)
    assert helped.returncode == 0 and "serve" in helped.stdout and "needs torch" in helped.stdout, helped.stderr
    train = subprocess.run([str(server.python), "-m", "app.cli", "train", "--help"], capture_output=True, text=True,
                           cwd=cwd)
    assert train.returncode != 0 and "full install" in train.stderr


def test_checkout_serves_the_shipped_exports_by_default(runtime, bus_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`make serve` in a fresh clone: no model named, no torch -> the exports shipped in weights/, with the fused rule
    their metadata carries as the default source (as the full install serves the checkpoint)."""
    server, _, _ = runtime
    monkeypatch.delenv("LGM_POSE_POSE_SOURCE", raising=False)  # the suite's servers default to lgm (conftest)
    for name in ("LGM_POSE_POSE_WEIGHTS", "LGM_POSE_DETECTOR_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    repo = Path(__file__).resolve().parents[1]
    with ServerProcess(env={"LGM_POSE_JOBS_DIR": str(server.python.parents[2] / "jobs_default")}, cwd=repo,
                       python=server.python) as default:  # cwd: the checkout's code, as its editable install runs
        assert default.ready["model"]["weights"] == "weights/lgm_pose_coco_256x192.onnx"
        assert default.ready["detector"] == "weights/yolo11n-pose.onnx"
        assert default.ready["pose_source"] == "fused" and default.ready["model"]["weights_loaded"] is True
        r = httpx.post(default.url + "/pose", files={"image": ("bus.jpg", bus_path.read_bytes(), "image/jpeg")},
                       timeout=60)
    assert r.status_code == 200 and r.json()["source"] == "fused" and len(r.json()["persons"]) >= 3, r.text


def test_pose_matches_the_full_install(runtime, bus_path: Path) -> None:
    server, pose, detector = runtime
    assert server.ready["model"]["backend"] in ("onnxruntime", "openvino")  # auto's choice, both torch-free
    assert server.ready["model"]["dataset"] == "coco"
    data = bus_path.read_bytes()
    r = httpx.post(server.url + "/pose", content=data, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert r.status_code == 200, r.text
    assert "fused" in server.ready["pose_sources"]  # the fused rule, read from the ONNX metadata without torch
    fused = httpx.post(server.url + "/pose", content=data, headers={"Content-Type": "image/jpeg"},
                       params={"pose_source": "fused"}, timeout=60)
    assert fused.status_code == 200 and fused.json()["source"] == "fused", fused.text
    full = LiveServer(Settings(pose_weights=pose, detector_weights=detector))
    try:
        expected = httpx.post(full.url + "/pose", content=data, headers={"Content-Type": "image/jpeg"}, timeout=60)
        expected_fused = httpx.post(full.url + "/pose", content=data, headers={"Content-Type": "image/jpeg"},
                                    params={"pose_source": "fused"}, timeout=60)
    finally:
        full.stop()
    for a, b in zip(fused.json()["persons"], expected_fused.json()["persons"], strict=True):
        np.testing.assert_allclose([[k["x"], k["y"], k["score"]] for k in a["keypoints"]],
                                   [[k["x"], k["y"], k["score"]] for k in b["keypoints"]], atol=0.5)
    got, want = r.json()["persons"], expected.json()["persons"]
    assert len(got) == len(want) >= 3
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a["box"], b["box"], atol=0.5)
        np.testing.assert_allclose([[k["x"], k["y"]] for k in a["keypoints"]],
                                   [[k["x"], k["y"]] for k in b["keypoints"]], atol=0.5)


def test_stream_metrics_and_eval(runtime, bus_path: Path, data_root: Path) -> None:
    server, _, _ = runtime
    with connect(server.url.replace("http", "ws") + "/ws/pose") as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
        ws.send(bus_path.read_bytes())
        answer = json.loads(ws.recv(timeout=60))
    assert answer["type"] == "pose" and len(answer["persons"]) >= 3
    assert "lgm_pose_ws_frames_processed_total 1.0" in httpx.get(server.url + "/metrics", timeout=10).text
    if not (data_root / COCO_MINI).is_dir():
        pytest.skip(f"{data_root / COCO_MINI} not here")
    job = httpx.post(server.url + "/eval/coco", json={"dataset": COCO_MINI, "boxes": "gt", "max_images": 3},
                     timeout=30)
    assert job.status_code == 202, job.text
    deadline = time.time() + 300
    while (state := httpx.get(server.url + f"/eval/{job.json()['id']}", timeout=10).json())["state"] not in (
            "done", "failed"):
        assert time.time() < deadline, state
        time.sleep(1)
    assert state["state"] == "done", state
    assert 0.0 < state["result"]["table"]["AP"] <= 1.0  # pycocotools in the runtime, real keypoints

