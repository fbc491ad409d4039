"""The PyTorch side of loading: checkpoint -> network (random weights, loudly, when missing), cached ONNX export.

Imported only where a checkpoint is served or exported; a runtime serving ONNX files never imports it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from model.inference.provenance import is_export_of
from model.nn.checkpoint import load_model, read_checkpoint
from model.nn.export import EXPORT_FORMAT, export_onnx
from model.nn.network import LGMPose, build_model

log = logging.getLogger("lgm_pose.model")
DEFAULT_CONFIG = "coco_256x192"
BANNER = "!" * 100


def load_network(weights: Path, config: str | None) -> tuple[LGMPose, bool, dict[str, Any]]:
    """The network and whether its weights came from the weights file (and the checkpoint's metadata)."""
    path = Path(weights)
    if path.is_file():
        model = load_model(path, config)
        meta = read_checkpoint(path).get("meta") or {}
        log.info("LGM-Pose weights loaded from %s (config %s)", path, model.cfg.name)
        return model, True, dict(meta)
    model = build_model(config or DEFAULT_CONFIG).eval()
    log.warning("\n%s\n!! LGM-Pose weights NOT FOUND at %s\n!! serving RANDOM INITIAL WEIGHTS (%s): keypoints "
                "are meaningless until trained weights are there\n%s", BANNER, path, model.cfg.name, BANNER)
    return model, False, {}


def onnx_export_cached(model: LGMPose, weights: Path | None, cache_dir: Path | None) -> Path:
    """Export `model` to ONNX unless the export beside it (or in `cache_dir`) was made from these very weights
    (its metadata records their SHA-256: the shipped exports of the default weights count, a clone's file times
    do not matter)."""
    if weights is None:  # random init: weights differ every start, export into a fresh temporary folder
        out = Path(tempfile.mkdtemp(prefix="lgm_pose_onnx_")) / f"{model.cfg.name}_random.onnx"
        return export_onnx(model, out)
    out = (cache_dir or weights.parent) / (weights.stem + ".onnx")
    try:
        if is_export_of(out, weights, EXPORT_FORMAT):
            log.info("ONNX export up to date: %s", out)
            return out
        log.info("exporting ONNX to %s", out)
        return export_onnx(model, out, source=weights)
    except OSError as exc:  # read-only weights folder: export into a temporary folder instead
        log.warning("cannot write ONNX cache next to %s (%s); exporting to a temporary folder", weights, exc)
        return export_onnx(model, Path(tempfile.mkdtemp(prefix="lgm_pose_onnx_")) / out.name, source=weights)
