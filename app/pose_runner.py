"""Pose runners: (B, 3, H, W) float32 crops -> (B, K, h, w) float32 heatmaps, with PyTorch or ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from model.network import LGMPose


class PoseRunner(Protocol):
    """A forward pass the batcher can call from its worker thread."""

    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchRunner:
    """PyTorch on cpu or cuda; half precision on cuda when asked."""

    name = "torch"

    def __init__(self, model: LGMPose, device: str = "cpu", fp16: bool = False) -> None:
        self.device = torch.device(device)
        self.fp16 = bool(fp16 and self.device.type == "cuda")
        model = model.eval().to(self.device)
        self.model = model.half() if self.fp16 else model

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
        if self.fp16:
            x = x.half()
        return self.model(x).float().cpu().numpy()


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
