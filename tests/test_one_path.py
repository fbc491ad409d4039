"""One top-down path: the service's COCO output equals `lgm-pose eval`'s for the same images and boxes.

A real server (torch backend, the shipped weights, flip test on) answers POST /pose?format=coco with
the ground-truth boxes of real coco-mini images; the evaluation engine runs the same boxes through its own
runner. Same scoring rule, OKS-NMS and clipping: keypoints within 0.5 px, instance scores within 0.001.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

from live_server import LiveServer  # noqa: E402

from app.core.settings import DEFAULT_POSE_WEIGHTS, Settings  # noqa: E402
from model.eval.coco import gt_boxes, load_coco  # noqa: E402
from model.eval.coco_engine import evaluate_coco  # noqa: E402
from model.inference.runners import TorchRunner  # noqa: E402
from model.nn.checkpoint import load_model  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def weights(random_checkpoint: Path) -> Path:
    return DEFAULT_POSE_WEIGHTS if DEFAULT_POSE_WEIGHTS.is_file() else random_checkpoint


@pytest.fixture(scope="module")
def server(weights: Path):
    live = LiveServer(Settings(pose_weights=weights, backend="torch", max_wait_ms=5, torch_threads=2,
                               flip_test=True))  # the flip path too (the CPU default is off)
    yield live
    live.stop()


def test_service_coco_output_equals_eval(server: LiveServer, weights: Path, data_root: Path, tmp_path: Path) -> None:
    ann = data_root / "coco-mini" / "annotations" / "person_keypoints_train2017.json"
    image_dir = data_root / "coco-mini" / "images" / "train2017"
    coco = load_coco(ann)
    boxes = gt_boxes(coco, sorted(coco.getImgIds()))
    counts: dict[int, int] = {}
    for b in boxes:
        counts[b["image_id"]] = counts.get(b["image_id"], 0) + 1
    ids = sorted(i for i, n in counts.items() if n >= 2)[:3] + sorted(i for i, n in counts.items() if n == 1)[:2]
    runner = TorchRunner(load_model(weights))
    result = evaluate_coco(runner, ann, image_dir, "gt", flip=True, image_ids=ids, results_path=tmp_path / "kp.json")
    expected = json.loads((tmp_path / "kp.json").read_text())
    served = []
    for image_id in ids:
        xyxy = [[x, y, x + w, y + h] for b in boxes if b["image_id"] == image_id for x, y, w, h in [b["bbox"]]]
        data = (image_dir / coco.imgs[image_id]["file_name"]).read_bytes()
        r = httpx.post(server.url + "/pose", params={"format": "coco", "image_id": image_id},
                       files={"image": ("x.jpg", data, "image/jpeg")}, data={"boxes": json.dumps(xyxy)}, timeout=120)
        assert r.status_code == 200, r.text
        served += r.json()
    assert result["counts"]["results_after_nms"] == len(expected) == len(served) >= 7
    for ours, theirs in zip(served, expected, strict=True):
        assert ours["image_id"] == theirs["image_id"]
        a = np.array(ours["keypoints"]).reshape(-1, 3)
        b = np.array(theirs["keypoints"]).reshape(-1, 3)
        assert np.abs(a[:, :2] - b[:, :2]).max() <= 0.5
        assert np.abs(a[:, 2] - b[:, 2]).max() <= 0.001
        assert abs(ours["score"] - theirs["score"]) <= 0.001


def test_service_sources_equal_eval_sources(server: LiveServer, weights: Path, data_root: Path,
                                           tmp_path: Path) -> None:
    """Each pose source of the service (`?format=coco&pose_source=...`, its detector's boxes) equals the offline
    sources of `lgm-pose eval --source` / `lgm-pose compare` on the same images: 0.5 px, 0.001 in score."""
    from model.eval.compare import source_estimates
    from model.eval.fusion_fit import collect_pairs, source_records
    from model.inference.loader import build_detector
    from model.inference.topdown import TopDown

    source = data_root / "coco-mini" / "annotations" / "person_keypoints_train2017.json"
    image_dir = data_root / "coco-mini" / "images" / "train2017"
    coco = json.loads(source.read_text())
    # images 5-8: the detector puts keypoints on the far image edge (x = w or y = h), which both paths clip to w - 1
    ids = sorted({a["image_id"] for a in coco["annotations"] if a.get("num_keypoints", 0) > 0})[4:8]
    ann = tmp_path / "subset.json"
    ann.write_text(json.dumps(dict(coco, images=[i for i in coco["images"] if i["id"] in ids],
                                   annotations=[a for a in coco["annotations"] if a["image_id"] in ids])))
    runner = TorchRunner(load_model(weights))
    topdown = TopDown(runner.meta, flip=True)  # as the server (flip_test on)
    s, chosen = server.settings, server.ready["detector_runtime"]  # the runtime and precision auto chose
    detector = build_detector(s.resolved_detector_weights(), s.device, s.detector_imgsz, s.fp16, chosen["backend"],
                              s.onnx_cache_dir, precision=chosen["precision"])
    pairs = collect_pairs(ann, image_dir, runner, topdown, detector, s.detector_conf, s.max_persons)
    files = {i["id"]: i["file_name"] for i in coco["images"]}
    for name, (xy, scores) in source_estimates(pairs, runner.fusion).items():
        expected = source_records(pairs, xy, scores, topdown)
        served = []
        for image_id in ids:
            r = httpx.post(server.url + "/pose", params={"format": "coco", "image_id": image_id, "pose_source": name},
                           content=(image_dir / files[image_id]).read_bytes(), headers={"Content-Type": "image/jpeg"},
                           timeout=120)
            assert r.status_code == 200, r.text
            served += r.json()
        assert len(served) == len(expected) >= 4, name
        for ours, theirs in zip(served, expected, strict=True):
            a, b = (np.array(r["keypoints"]).reshape(-1, 3) for r in (ours, theirs))
            assert ours["image_id"] == theirs["image_id"] and np.abs(a[:, :2] - b[:, :2]).max() <= 0.5, name
            assert np.abs(a[:, 2] - b[:, 2]).max() <= 0.001 and abs(ours["score"] - theirs["score"]) <= 0.001, name


def test_mpii_checkpoint_served_with_mpii_joint_names(data_root: Path, tmp_path: Path, bus_path: Path) -> None:
    """An MPII model, served through its ONNX export (metadata read back without torch), answers in MPII joints."""
    from websockets.sync.client import connect

    from model.data.datasets import MPII
    from model.nn.checkpoint import save_checkpoint
    from model.nn.network import build_model

    weights = tmp_path / "mpii.pt"
    save_checkpoint(weights, build_model("mpii_256x256"))
    live = LiveServer(Settings(pose_weights=weights, backend="onnxruntime", onnx_cache_dir=tmp_path, torch_threads=2))
    try:
        assert live.ready["model"]["dataset"] == "mpii" and live.ready["model"]["num_joints"] == 16
        r = httpx.post(live.url + "/pose", files={"image": ("bus.jpg", bus_path.read_bytes(), "image/jpeg")},
                       data={"boxes": "[[50, 400, 250, 900]]"}, timeout=120)
        assert r.status_code == 200, r.text
        body = r.json()
        assert [k["name"] for k in body["persons"][0]["keypoints"]] == list(MPII.joint_names)
        assert [tuple(e) for e in body["skeleton"]] == list(MPII.skeleton)
        with connect(live.url.replace("http", "ws") + "/ws/pose") as ws:
            hello = json.loads(ws.recv(timeout=30))
        assert hello["keypoint_names"] == list(MPII.joint_names)
    finally:
        live.stop()
