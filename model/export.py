"""ONNX export with a dynamic batch axis."""

from __future__ import annotations

from pathlib import Path

import torch

from model.network import LGMPose


def export_onnx(model: LGMPose, out: str | Path, opset: int = 17) -> Path:
    """Export `model` (eval mode) to ONNX; input `input` (B,3,H,W), output `heatmaps` (B,K,H/4,W/4)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dummy = torch.zeros(2, 3, *model.cfg.input_hw)
    torch.onnx.export(
        model, (dummy,), str(out), input_names=["input"], output_names=["heatmaps"],
        dynamic_axes={"input": {0: "batch"}, "heatmaps": {0: "batch"}}, opset_version=opset, dynamo=False,
    )
    return out
