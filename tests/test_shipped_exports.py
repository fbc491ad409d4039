"""The ONNX exports shipped in weights/ (what the runtime-only install of `make serve` serves) are those of the
shipped checkpoints: the same metadata (config, dataset and codec, the fused source's rule, the source's SHA-256,
the detector's licence) and the same outputs on real images. A checkpoint changed without `make models` fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.core.default_models import SHIPPED_DETECTOR
from app.core.settings import DEFAULT_POSE_WEIGHTS
from model.data.meta import CONFIG_KEY, FUSION_KEY, META_KEY, pose_meta_of
from model.inference import onnx_detector
from model.inference.onnx_detector import decode_predictions, letterbox
from model.inference.onnx_session import cpu_session
from model.inference.provenance import export_record, file_sha256, onnx_metadata
from model.inference.runners import OnnxRunner
from model.inference.topdown import TopDown
from model.inference.torch_loader import onnx_export_cached
from model.inference.yolo import default_yolo_weights, load_yolo
from model.nn.checkpoint import load_model
from model.nn.export import EXPORT_FORMAT

pytestmark = pytest.mark.unit
POSE_EXPORT = DEFAULT_POSE_WEIGHTS.with_suffix(".onnx")
IMAGES = ("bus.jpg", "zidane.jpg")
STALE = "stale: run `make models` (the exports of the shipped checkpoints) and commit weights/*.onnx"


@pytest.fixture(scope="module")
def model():
    return load_model(DEFAULT_POSE_WEIGHTS)


@pytest.fixture(scope="module")
def images(bus_path: Path) -> list[np.ndarray]:
    return [cv2.imread(str(bus_path.with_name(name))) for name in IMAGES]


@pytest.fixture(scope="module")
def yolo_net():
    return load_yolo(default_yolo_weights()).model.float().eval()


def _json(text: str) -> object:
    return json.loads(text)


def test_pose_export_metadata_is_the_checkpoints(model) -> None:
    meta = onnx_metadata(POSE_EXPORT)
    assert export_record(POSE_EXPORT) == {"source_sha256": file_sha256(DEFAULT_POSE_WEIGHTS),
                                          "format": EXPORT_FORMAT}, STALE
    assert _json(meta[CONFIG_KEY]) == _json(json.dumps(model.cfg.to_dict()))
    assert _json(meta[META_KEY]) == _json(pose_meta_of(model).to_json())  # dataset (joints, flips, sigmas), codec
    assert model.fusion is not None and _json(meta[FUSION_KEY]) == _json(json.dumps(model.fusion.to_dict()))
    # the torch-free path reads the same rule, so it serves the same default pose source (`fused`)
    assert OnnxRunner(POSE_EXPORT).fusion.to_dict() == model.fusion.to_dict()


def test_full_install_serves_the_shipped_export_as_its_cache(model) -> None:
    """Serving the checkpoint on CPU (the full install) takes the shipped export as its up-to-date cache: a fresh
    clone's file times do not make it export again over the committed file."""
    before = (POSE_EXPORT.read_bytes(), POSE_EXPORT.stat().st_mtime_ns)
    assert onnx_export_cached(model, DEFAULT_POSE_WEIGHTS, None) == POSE_EXPORT
    assert (POSE_EXPORT.read_bytes(), POSE_EXPORT.stat().st_mtime_ns) == before


def test_pose_export_outputs_match_the_checkpoint(model, images: list[np.ndarray]) -> None:
    session = cpu_session(POSE_EXPORT)
    detector = cpu_session(SHIPPED_DETECTOR)
    top = TopDown(pose_meta_of(model), flip=False)
    crops = 0
    for image in images:
        blob, gain, pad = letterbox(image, 640)
        boxes, _, _ = decode_predictions(detector.run(None, {"images": blob})[0][0], 0.25, 20, gain, pad,
                                         image.shape[1::-1])
        inputs = top.prepare(image, boxes).inputs
        with torch.inference_mode():
            want = model(torch.from_numpy(inputs)).numpy()
        got = session.run(None, {"input": inputs})[0]
        assert np.abs(got - want).max() < 1e-4, STALE
        prepared = top.prepare(image, boxes)
        want_points, _ = top.keypoints(prepared, want, image.shape[1::-1])
        got_points, _ = top.keypoints(prepared, got, image.shape[1::-1])
        assert np.abs(got_points - want_points).max() < 0.01, STALE  # image pixels
        crops += len(inputs)
    assert crops >= 5  # real persons: bus.jpg has 4, zidane.jpg 2


def test_detector_export_metadata(model) -> None:
    meta = onnx_metadata(SHIPPED_DETECTOR)
    source = file_sha256(default_yolo_weights())
    assert export_record(SHIPPED_DETECTOR) == {"source_sha256": source, "format": onnx_detector.EXPORT_FORMAT}, STALE
    assert "AGPL-3.0" in meta["license"] and meta["task"] == "pose" and meta["kpt_shape"] == "[17, 3]"
    assert "date" not in meta  # the same weights give the same bytes
    assert model.fusion.detector_sha256 == source  # the fused rule was fitted against the shipped detector


def test_detector_export_outputs_match_the_checkpoint(yolo_net, images: list[np.ndarray]) -> None:
    session = cpu_session(SHIPPED_DETECTOR)
    for image in images:
        blob, gain, pad = letterbox(image, 640)
        with torch.inference_mode():
            want = yolo_net(torch.from_numpy(blob))[0][0].numpy()
        got = session.run(None, {"images": blob})[0][0]
        got_d = decode_predictions(got, 0.25, 20, gain, pad, image.shape[1::-1])
        want_d = decode_predictions(want, 0.25, 20, gain, pad, image.shape[1::-1])
        assert len(got_d[0]) == len(want_d[0]) >= 2, STALE
        np.testing.assert_allclose(got_d[0], want_d[0], atol=0.01, err_msg=STALE)  # boxes, image pixels
        np.testing.assert_allclose(got_d[1], want_d[1], atol=1e-4, err_msg=STALE)  # scores
        np.testing.assert_allclose(got_d[2], want_d[2], atol=0.01, err_msg=STALE)  # keypoints (x, y, score)
