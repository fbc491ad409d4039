"""Pose runners: (B, 3, H, W) float32 crops -> (B, K, h, w) float32 heatmaps, with PyTorch, ONNX Runtime or OpenVINO.

Every runner knows what it serves (`meta`: dataset metadata and codec, whose `input_hw` is the network input).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from model.data.meta import FUSION_KEY, META_KEY, PoseMeta
from model.inference.engines import Engine, open_engine
from model.inference.fusion import Fusion


class Runner(Protocol):
    """A forward pass: numpy batch in, numpy heatmaps out (called from one thread at a time)."""

    name: str
    meta: PoseMeta
    fusion: Fusion | None  # the fused source's rule fitted for this model (None: never fitted)

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchRunner:
    """A heatmap network in PyTorch, no gradients; half precision when `fp16` and the device is CUDA."""

    name = "torch"

    def __init__(self, model, device: str = "cpu", fp16: bool = False) -> None:
        import torch

        from model.data.meta import pose_meta_of

        self._torch = torch
        self.device = torch.device(device)
        self.fp16 = bool(fp16 and self.device.type == "cuda")
        model = model.to(self.device).eval()
        self.model = model.half() if self.fp16 else model
        self.meta = pose_meta_of(model)
        self.fusion = getattr(model, "fusion", None)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, non_blocking=True)
        with torch.inference_mode():
            out = self.model(x.half() if self.fp16 else x)
        return out.float().cpu().numpy()


class OnnxRunner:
    """An export of `lgm-pose export` (input `input`, output `heatmaps`, metadata) in a CPU runtime: ONNX Runtime
    or OpenVINO (`engines.open_engine`), at a precision its offline check accepted (f32 always)."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None, runtime: str = "onnxruntime",
                 precision: str = "f32", engine: Engine | None = None) -> None:
        self.path = Path(onnx_path)
        self.engine = engine or open_engine(self.path, runtime, precision, threads)
        self.name, self.precision = self.engine.runtime, self.engine.precision
        stored = self.engine.metadata(META_KEY)
        if stored is None:
            raise ValueError(f"{self.path} carries no {META_KEY} metadata: export it again with `lgm-pose export`")
        self.meta = PoseMeta.from_json(stored)
        fusion = self.engine.metadata(FUSION_KEY)
        self.fusion = Fusion.from_dict(json.loads(fusion)) if fusion else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.engine.run(batch)


def as_runner(model_or_runner, device: str = "cpu") -> Runner:
    """An nn.Module becomes a TorchRunner; a runner is used as it is."""
    if hasattr(model_or_runner, "meta") and callable(model_or_runner):
        return model_or_runner
    return TorchRunner(model_or_runner, device)
