"""Person detection with YOLO11n-pose from its ONNX export: letterbox and NMS in NumPy/OpenCV, no PyTorch at run time.

The export (Ultralytics, offline, dynamic input shape) is made once where the full install is and cached
beside the weights (`export_yolo_onnx`); `OnnxPersonDetector` then needs only a CPU runtime (ONNX Runtime or
OpenVINO, `engines.open_engine`: one letterbox, NMS and keypoint decoding for both), NumPy and OpenCV.
Pre- and post-processing follow Ultralytics' predictor for the same boxes: a stride-32 letterbox with grey
(114) padding, confidence filter, greedy NMS at IoU 0.7, boxes scaled back and clipped to the image.
The pose head's keypoints come along (`detect_with_keypoints`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from model.inference.engines import Engine, open_engine
from model.inference.provenance import is_export_of, record_source

log = logging.getLogger("lgm_pose.detector")
NMS_IOU = 0.7
STRIDE = 32
EXPORT_FORMAT = 2  # 2: the source's SHA-256 in the metadata, no export date


def letterbox(image: np.ndarray, imgsz: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping the aspect ratio so the longer side is `imgsz`, pad to a multiple of 32 (grey, centred).

    Returns the padded RGB float32 NCHW input, the scale and the (left, top) padding.
    """
    h, w = image.shape[:2]
    gain = min(imgsz / h, imgsz / w)
    new_w, new_h = int(round(w * gain)), int(round(h * gain))
    dw, dh = ((imgsz - new_w) % STRIDE) / 2, ((imgsz - new_h) % STRIDE) / 2
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    blob = padded[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return np.ascontiguousarray(blob), gain, (left, top)


def decode_predictions(pred: np.ndarray, conf: float, max_det: int, gain: float, pad: tuple[int, int],
                       image_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(56, N) raw YOLO-pose output -> boxes (n, 4) x1y1x2y2, scores (n,), keypoints (n, 17, 3), best first."""
    pred = pred.T
    keep = pred[:, 4] >= conf
    pred = pred[keep]
    if len(pred) == 0:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 17, 3))
    cx, cy, bw, bh = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    xywh = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1)
    idx = cv2.dnn.NMSBoxes(xywh.tolist(), pred[:, 4].tolist(), conf, NMS_IOU)  # (its top_k cuts before NMS)
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)[:max_det]
    pred = pred[idx]
    order = np.argsort(-pred[:, 4], kind="stable")
    pred = pred[order]
    w, h = image_wh
    boxes = np.stack([pred[:, 0] - pred[:, 2] / 2, pred[:, 1] - pred[:, 3] / 2,
                      pred[:, 0] + pred[:, 2] / 2, pred[:, 1] + pred[:, 3] / 2], 1)
    boxes = (boxes - np.array([pad[0], pad[1], pad[0], pad[1]])) / gain
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    kpts = pred[:, 5:].reshape(len(pred), -1, 3).astype(np.float64)
    kpts[..., 0] = ((kpts[..., 0] - pad[0]) / gain).clip(0, w)
    kpts[..., 1] = ((kpts[..., 1] - pad[1]) / gain).clip(0, h)
    return boxes.astype(np.float64), pred[:, 4].astype(np.float64), kpts


class OnnxPersonDetector:
    """YOLO-pose person detector from its ONNX export, in ONNX Runtime or OpenVINO on the CPU. Synchronous; call
    from one thread at a time. `runtime`, `precision` and `choice` (why, when chosen by `auto`) say what runs."""

    def __init__(self, onnx_path: str | Path, imgsz: int = 640, threads: int | None = None,
                 runtime: str = "onnxruntime", precision: str = "f32", engine: Engine | None = None) -> None:
        self.weights = Path(onnx_path)
        self.imgsz = imgsz
        self.engine = engine or open_engine(self.weights, runtime, precision, threads)
        self.runtime, self.precision = self.engine.runtime, self.engine.precision
        self.choice: str | None = None

    def detect_with_keypoints(self, image_bgr: np.ndarray, conf: float,
                              max_persons: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BGR image -> person boxes (N, 4), scores (N,) and YOLO's own keypoints (N, 17, 3), best first."""
        blob, gain, pad = letterbox(image_bgr, self.imgsz)
        pred = self.engine.run(blob)[0]
        h, w = image_bgr.shape[:2]
        return decode_predictions(pred, conf, max_persons, gain, pad, (w, h))

    def detect(self, image_bgr: np.ndarray, conf: float, max_persons: int) -> tuple[np.ndarray, np.ndarray]:
        """BGR image -> person boxes (N, 4) x1y1x2y2 in image pixels and scores (N,), best first."""
        boxes, scores, _ = self.detect_with_keypoints(image_bgr, conf, max_persons)
        return boxes, scores

    def warm_up(self) -> None:
        self.detect(np.zeros((self.imgsz, self.imgsz, 3), dtype=np.uint8), 0.5, 1)


def export_yolo_onnx(weights: str | Path, cache_dir: str | Path) -> Path:
    """The ONNX export of a YOLO .pt (dynamic input shape), made with Ultralytics once and cached in `cache_dir`.

    Its metadata (Ultralytics' own, licence AGPL-3.0 included, less the export date) records the source's
    SHA-256 (`provenance`): that says when it must be made again, and the same weights give the same bytes.
    """
    weights = Path(weights)
    cache_dir = Path(cache_dir)
    out = cache_dir / (weights.stem + ".onnx")
    if is_export_of(out, weights, EXPORT_FORMAT):
        return out
    import shutil
    import tempfile

    from model.inference.yolo import load_yolo

    log.info("exporting detector %s to ONNX in %s", weights, cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / weights.name  # Ultralytics writes the export beside its input
        shutil.copy2(weights, local)
        exported = Path(load_yolo(local).export(format="onnx", dynamic=True, simplify=False, opset=17,
                                                verbose=False))
        record_source(exported, weights, EXPORT_FORMAT, drop=("date",))
        shutil.move(str(exported), partial := out.with_name(f"{out.name}.{os.getpid()}.partial"))
        os.replace(partial, out)  # atomic: replicas starting together never read a half-written file
    return out
