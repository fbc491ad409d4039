"""Person detector in PyTorch: an Ultralytics YOLO model loaded by file path, offline, persons only (class 0).

The CUDA path; on CPU the service runs the same model in ONNX Runtime (`model.inference.onnx_detector`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from model.inference.yolo import load_yolo


class Detector(Protocol):
    """What the pipeline needs of a person detector (PyTorch or ONNX Runtime)."""

    weights: Path
    runtime: str  # torch, onnxruntime or openvino
    precision: str
    choice: str | None  # how runtime and precision were chosen

    def detect(self, image_bgr: np.ndarray, conf: float, max_persons: int) -> tuple[np.ndarray, np.ndarray]: ...

    def detect_with_keypoints(self, image_bgr: np.ndarray, conf: float,
                              max_persons: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def warm_up(self) -> None: ...


class PersonDetector:
    """Synchronous and not thread-safe: call `detect` from one worker thread at a time."""

    def __init__(self, weights: str | Path, device: str = "cpu", imgsz: int = 640, half: bool = False) -> None:
        self.weights = Path(weights)
        self.model = load_yolo(self.weights)
        self.device = "cpu" if device == "cpu" else 0
        self.imgsz = imgsz
        self.half = bool(half and device == "cuda")
        self.runtime, self.precision = "torch", "fp16" if self.half else "f32"
        self.choice: str | None = "pinned by the settings"

    def detect_with_keypoints(self, image_bgr: np.ndarray, conf: float,
                              max_persons: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BGR image -> person boxes (N, 4) x1y1x2y2, scores (N,) and YOLO's own keypoints (N, 17, 3), best first."""
        extra = {"half": True} if self.half else {}  # passing half=False draws a deprecation warning
        result = self.model.predict(image_bgr, conf=conf, classes=[0], max_det=max_persons, imgsz=self.imgsz,
                                    device=self.device, verbose=False, **extra)[0]
        boxes = result.boxes
        if boxes is None or len(boxes) == 0 or result.keypoints is None:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 17, 3))
        xyxy = boxes.xyxy.cpu().numpy().astype(np.float64)
        scores = boxes.conf.cpu().numpy().astype(np.float64)
        kpts = np.concatenate([result.keypoints.xy.cpu().numpy(), result.keypoints.conf.cpu().numpy()[..., None]],
                              -1).astype(np.float64)
        order = np.argsort(-scores, kind="stable")[:max_persons]
        return xyxy[order], scores[order], kpts[order]

    def detect(self, image_bgr: np.ndarray, conf: float, max_persons: int) -> tuple[np.ndarray, np.ndarray]:
        """BGR image -> person boxes (N, 4) x1y1x2y2 in image pixels and scores (N,), best first."""
        boxes, scores, _ = self.detect_with_keypoints(image_bgr, conf, max_persons)
        return boxes, scores

    def warm_up(self) -> None:
        self.detect(np.zeros((self.imgsz, self.imgsz, 3), dtype=np.uint8), 0.5, 1)
