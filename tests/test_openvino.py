"""OpenVINO as the second CPU runtime (issue 26): it serves as ONNX Runtime does, unchecked or failed precisions are
refused at load, and `auto` falls back to ONNX Runtime where OpenVINO or the CPU's units are missing.

Real servers (tests/live_server.py) on ONNX exports of the shipped weights, real images (Ultralytics' bus.jpg).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import LiveServer
from websockets.sync.client import connect

from app.core.settings import Settings
from bench.runtime_env import export_models
from model.inference import cpu_features
from model.inference.engines import open_engine
from model.inference.precision import PrecisionRefused, model_hash, store_verdict, verdict_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(pose.onnx, detector.onnx): the shipped weights exported here (their precision verdicts are written beside)."""
    return export_models(tmp_path_factory.mktemp("exports"))


def _settings(exports: tuple[Path, Path], **kw) -> Settings:
    pose, detector = exports
    return Settings(pose_weights=pose, detector_weights=detector, **kw)


def _served(settings: Settings, bus_path: Path) -> tuple[dict, dict, dict, str]:
    """(/readyz, POST /pose, the first stream answer, /metrics) of a fresh server."""
    live = LiveServer(settings)
    try:
        data = bus_path.read_bytes()
        pose = httpx.post(live.url + "/pose", content=data, headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert pose.status_code == 200, pose.text
        with connect(live.url.replace("http", "ws") + "/ws/pose") as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "hello"
            ws.send(data)
            stream = json.loads(ws.recv(timeout=60))
        metrics = httpx.get(live.url + "/metrics", timeout=10).text
        return live.ready, pose.json(), stream, metrics
    finally:
        live.stop()


def _xy(person: dict) -> list[list[float]]:
    """A person's keypoints as (x, y): HTTP answers name them, stream messages list [x, y, score]."""
    return [[k["x"], k["y"]] if isinstance(k, dict) else k[:2] for k in person["keypoints"]]


def _same_poses(got: list[dict], want: list[dict], tol: float = 0.5) -> None:
    assert len(got) == len(want) >= 3
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a["box"], b["box"], atol=tol)
        np.testing.assert_allclose(_xy(a), _xy(b), atol=tol)


def test_openvino_f32_serves_as_onnxruntime(exports, bus_path: Path) -> None:
    ref_ready, ref_pose, ref_stream, _ = _served(_settings(exports, backend="onnxruntime", detector_backend=
                                                           "onnxruntime"), bus_path)
    ready, pose, stream, metrics = _served(_settings(exports, backend="openvino", detector_backend="openvino"),
                                           bus_path)
    assert ref_ready["model"]["backend"] == "onnxruntime"
    assert (ready["model"]["backend"], ready["model"]["precision"]) == ("openvino", "f32")
    assert ready["detector_runtime"]["backend"] == "openvino" and ready["detector_runtime"]["precision"] == "f32"
    assert "pinned" in ready["model"]["chosen_because"]
    assert 'backend="openvino"' in metrics and 'detector_backend="openvino"' in metrics
    _same_poses(pose["persons"], ref_pose["persons"])
    assert stream["type"] == ref_stream["type"] == "pose"
    _same_poses(stream["persons"], ref_stream["persons"])


def test_pose_graph_compiled_per_batch_size_answers_as_onnxruntime(exports, bus_path: Path) -> None:
    """OpenVINO compiles the pose graph once per batch size with static shapes: every batch size answers as ONNX
    Runtime does; sizes beyond STATIC_BATCHES share one dynamic compile; the detector (its image size varies) stays
    one dynamic compile."""
    import cv2

    from model.inference.onnx_detector import letterbox

    pose, detector = exports
    image = cv2.imread(str(bus_path))
    crops = np.stack([cv2.resize(image[y:y + 512, x:x + 384], (192, 256)) for x, y in
                      ((0, 200), (200, 250), (400, 150), (600, 300))]).transpose(0, 3, 1, 2).astype(np.float32) / 255
    ov_pose, ort_pose = open_engine(pose, "openvino"), open_engine(pose, "onnxruntime")
    for batch in (1, 3, 4, 1):
        np.testing.assert_allclose(ov_pose.run(crops[:batch]), ort_pose.run(crops[:batch]), atol=1e-4)
    assert ov_pose.compiled_batches == (1, 3, 4)
    limit = ov_pose.STATIC_BATCHES
    for batch in (*range(1, limit + 1), limit + 1, limit + 3):
        x = np.repeat(crops, -(-batch // 4), axis=0)[:batch]
        np.testing.assert_allclose(ov_pose.run(x), ort_pose.run(x), atol=1e-4)
    assert sorted(ov_pose.compiled_batches) == [0, *range(1, limit + 1)]
    ov_det, ort_det = open_engine(detector, "openvino"), open_engine(detector, "onnxruntime")
    blob = letterbox(image, 640)[0]
    np.testing.assert_allclose(ov_det.run(blob), ort_det.run(blob), atol=0.05)
    assert ov_det.compiled_batches == (0,)


def test_server_compiles_every_batch_size_before_it_is_ready(exports, bus_path: Path) -> None:
    """With passes of up to 3 crops, the OpenVINO pose engine holds its batch 1, 2 and 3 compiles once /readyz says
    ready: no request pays for compiling, and serving `bus.jpg` (4 persons, flip test) adds none."""
    live = LiveServer(_settings(exports, backend="openvino", detector_backend="onnxruntime", max_batch=3,
                                flip_test=True))
    try:
        app = live.server.config.app
        while not hasattr(app, "state"):  # under the ASGI wrappers (the offenders' cool-down)
            app = app.app
        engine = app.state.service.batcher.forward.engine
        assert engine.compiled_batches == (1, 2, 3)
        r = httpx.post(live.url + "/pose", content=bus_path.read_bytes(), headers={"Content-Type": "image/jpeg"},
                       timeout=60)
        assert r.status_code == 200 and len(r.json()["persons"]) >= 4
        assert engine.compiled_batches == (1, 2, 3)
    finally:
        live.stop()


def test_unchecked_or_failed_precision_is_refused(exports, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pose, _ = exports
    real_flags = cpu_features.cpu_flags()  # the eval subprocess below sees this CPU as it is
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16", "avx512_vnni"}))
    with pytest.raises(PrecisionRefused, match="never checked"):
        open_engine(pose, "openvino", "bf16")
    with pytest.raises(RuntimeError, match='"status":"failed".*never checked'):  # refused at load, on /readyz
        LiveServer(_settings(exports, backend="openvino", precision="bf16"))
    verdict = {"sha256": model_hash(pose), "runtime": "openvino", "precision": "bf16", "accepted": False,
               "ap": 0.5, "ap_fp32": 0.6}
    store_verdict(pose, verdict)
    with pytest.raises(PrecisionRefused, match="failed its check"):
        open_engine(pose, "openvino", "bf16")
    store_verdict(pose, {**verdict, "sha256": "0" * 64, "accepted": True})  # accepted, but for another file
    with pytest.raises(PrecisionRefused, match="failed its check"):
        open_engine(pose, "openvino", "bf16")
    store_verdict(pose, {**verdict, "accepted": True})
    assert open_engine(pose, "openvino", "bf16").precision == "bf16"
    store_verdict(pose, verdict)  # the eval command refuses it as the service does
    run = subprocess.run([sys.executable, "-m", "app.cli", "eval", "--weights", str(pose), "--data",
                          f"{data_root / 'fashion'}:val", "--backend", "openvino", "--precision", "bf16"],
                         capture_output=True, text=True, cwd=REPO, env={**os.environ, "YOLO_OFFLINE": "1"})
    expected = cpu_features.missing_units("bf16", real_flags) or "failed its check"  # a CPU without bf16 units
    assert run.returncode == 2 and expected in run.stderr, run.stderr  # refuses bf16 before reading any verdict


def test_check_precision_stores_its_verdict(exports, data_root: Path) -> None:
    _, detector = exports
    run = subprocess.run([sys.executable, "-m", "app.cli", "check-precision", "--model", str(detector),
                          "--precision", "bf16", "--data", f"{data_root / 'fashion'}:val"], capture_output=True,
                         text=True, cwd=REPO, env={**os.environ, "YOLO_OFFLINE": "1"})
    assert run.returncode in (0, 1), run.stderr
    verdict = verdict_for(detector, "openvino", "bf16")
    assert verdict is not None and verdict["accepted"] == (run.returncode == 0)
    assert abs(verdict["ap"] - verdict["ap_fp32"]) <= 0.005 or not verdict["accepted"]
    assert verdict["kpt_delta_px"]["joints"] > 100 and verdict["kpt_delta_px"]["p95"] is not None


def test_auto_falls_back_to_onnxruntime_without_openvino(exports, bus_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` fails as where it is not installed
    ready, pose, _, _ = _served(_settings(exports), bus_path)  # the CPU default: auto
    assert (ready["model"]["backend"], ready["model"]["precision"]) == ("onnxruntime", "f32")
    assert "openvino is not installed" in ready["model"]["chosen_because"]
    assert ready["detector_runtime"]["backend"] == "onnxruntime"
    assert len(pose["persons"]) >= 3


def test_auto_without_the_cpu_units_runs_f32(exports, bus_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pose, _ = exports
    for precision in ("bf16", "int8"):  # accepted verdicts: only the missing units keep them out
        store_verdict(pose, {"sha256": model_hash(pose), "runtime": "openvino", "precision": precision,
                             "accepted": True, "ap": 0.6, "ap_fp32": 0.6})
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    ready, _, _, _ = _served(_settings(exports, backend="auto"), bus_path)
    assert ready["model"]["precision"] == "f32" and ready["model"]["backend"] in ("onnxruntime", "openvino")
    assert "bf16 needs one of" in ready["model"]["chosen_because"]
    assert "timed trial" in ready["model"]["chosen_because"]  # ONNX Runtime and OpenVINO f32, the faster
