"""ONNX export with a dynamic batch axis; the model's config, dataset metadata and codec go into its metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from model.data.meta import CONFIG_KEY, FUSION_KEY, META_KEY, pose_meta_of
from model.inference.provenance import export_entry
from model.nn.network import LGMPose

# bump when the export changes (2: dataset metadata and codec; 3: fusion rule; 4: the source's SHA-256)
EXPORT_FORMAT = 4


def export_onnx(model: LGMPose, out: str | Path, opset: int = 17, source: str | Path | None = None) -> Path:
    """Export `model` (eval mode) to ONNX; input `input` (B,3,H,W), output `heatmaps` (B,K,H/4,W/4).

    The export's metadata carries `lgm_pose_meta` (joint names, flip pairs, skeleton, sigmas, codec),
    `lgm_pose_config` and, when the checkpoint has one, `lgm_pose_fusion` (the fused source's rule), so a runtime
    without PyTorch knows what it serves; with `source` (the checkpoint file) also `lgm_pose_export`, its SHA-256.
    The same model and source give the same bytes.
    """
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.name}.{os.getpid()}.partial")  # others (replicas) never read a half file
    model = model.eval()
    dummy = torch.zeros(2, 3, *model.cfg.input_hw)
    torch.onnx.export(
        model, (dummy,), str(partial), input_names=["input"], output_names=["heatmaps"],
        dynamic_axes={"input": {0: "batch"}, "heatmaps": {0: "batch"}}, opset_version=opset, dynamo=False,
    )
    graph = onnx.load(str(partial))
    entries = [(META_KEY, pose_meta_of(model).to_json()), (CONFIG_KEY, json.dumps(model.cfg.to_dict()))]
    if getattr(model, "fusion", None) is not None:
        entries.append((FUSION_KEY, json.dumps(model.fusion.to_dict())))
    if source is not None:
        entries.append(export_entry(source, EXPORT_FORMAT))
    for key, value in entries:
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(partial))
    os.replace(partial, out)
    return out
