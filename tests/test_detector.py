"""The ONNX Runtime person detector gives the same boxes as Ultralytics' PyTorch predictor on real images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from model.inference.detector import PersonDetector
from model.inference.onnx_detector import OnnxPersonDetector, export_yolo_onnx
from model.inference.yolo import default_yolo_weights

pytestmark = pytest.mark.unit


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_yolo_onnx(default_yolo_weights(), tmp_path_factory.mktemp("detector"))


def test_export_is_cached(onnx_path: Path) -> None:
    mtime = onnx_path.stat().st_mtime_ns
    assert export_yolo_onnx(default_yolo_weights(), onnx_path.parent) == onnx_path
    assert onnx_path.stat().st_mtime_ns == mtime


def test_same_boxes_and_keypoints_as_ultralytics(onnx_path: Path, bus_path: Path, zidane_path: Path,
                                                 data_root: Path) -> None:
    """ONNX Runtime and the PyTorch path (Ultralytics' own predictor, on CPU) agree on boxes and keypoints.

    Measured on these images: keypoints within 0.0002 px, scores within 2e-6; bounded at 0.05 px and 0.001 (the
    issue asks 0.5 px and 0.01).
    """
    ours, ref = OnnxPersonDetector(onnx_path), PersonDetector(default_yolo_weights())
    images = [bus_path, zidane_path] + sorted((data_root / "coco-mini" / "images" / "train2017").glob("*.jpg"))[:8]
    matched = 0
    for path in images:
        image = cv2.imread(str(path))
        boxes, scores, kpts = ours.detect_with_keypoints(image, 0.25, 20)
        ref_boxes, ref_scores, ref_kpts = ref.detect_with_keypoints(image, 0.25, 20)
        assert len(boxes) == len(ref_boxes), path.name
        assert np.array_equal(ours.detect(image, 0.25, 20)[0], boxes)  # detect() is the same call, keypoints dropped
        for box, score, kp in zip(ref_boxes, ref_scores, ref_kpts, strict=True):
            ious = [_iou(box, b) for b in boxes]
            j = int(np.argmax(ious))
            assert ious[j] >= 0.99 and abs(scores[j] - score) <= 0.001, (path.name, ious[j], scores[j], score)
            assert np.abs(kpts[j, :, :2] - kp[:, :2]).max() <= 0.05, path.name
            assert np.abs(kpts[j, :, 2] - kp[:, 2]).max() <= 0.001, path.name
            matched += 1
    assert matched >= 15


def test_keypoints_come_along(onnx_path: Path, zidane_path: Path) -> None:
    boxes, scores, kpts = OnnxPersonDetector(onnx_path).detect_with_keypoints(cv2.imread(str(zidane_path)), 0.5, 20)
    assert kpts.shape == (len(boxes), 17, 3) and len(boxes) >= 2
    inside = (kpts[..., 0] >= boxes[:, None, 0] - 5) & (kpts[..., 0] <= boxes[:, None, 2] + 5)
    assert inside[kpts[..., 2] > 0.5].all()  # confident joints lie in their person's box
