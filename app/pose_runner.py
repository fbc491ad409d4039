"""Pose runners: (B, 3, H, W) float32 crops -> (B, K, h, w) float32 heatmaps, with PyTorch or ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from model.eval_infer import TorchRunner

__all__ = ["OnnxRunner", "PoseRunner", "TorchRunner"]


class PoseRunner(Protocol):
    """A forward pass the batcher can call from its worker thread."""

    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class OnnxRunner:
    """ONNX Runtime on CPU over an exported model (input `input`, output `heatmaps`)."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(onnx_path)
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(["heatmaps"], {"input": np.ascontiguousarray(batch, dtype=np.float32)})[0]
