"""The PyTorch side of loading: checkpoint -> network (random weights, loudly, when missing), cached ONNX export.

Imported only where a checkpoint is served or exported; a runtime serving ONNX files never imports it.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from model.nn.checkpoint import load_model, read_checkpoint
from model.nn.export import export_onnx
from model.nn.network import LGMPose, NetConfig, build_model

log = logging.getLogger("lgm_pose.model")
DEFAULT_CONFIG = "coco_256x192"
BANNER = "!" * 100
EXPORT_FORMAT = 3  # bump when the export changes (2: dataset metadata and codec in the metadata; 3: fusion rule)


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


def _stamp(weights: Path | None, cfg: NetConfig) -> dict[str, Any]:
    st = weights.stat() if weights is not None else None
    return {"weights": str(weights), "size": st.st_size if st else None, "mtime_ns": st.st_mtime_ns if st else None,
            "config": cfg.to_dict(), "torch": torch.__version__, "format": EXPORT_FORMAT}


def onnx_export_cached(model: LGMPose, weights: Path | None, cache_dir: Path | None) -> Path:
    """Export `model` to ONNX unless an up-to-date export of the same weights is already cached."""
    if weights is None:  # random init: weights differ every start, export into a fresh temporary folder
        out = Path(tempfile.mkdtemp(prefix="lgm_pose_onnx_")) / f"{model.cfg.name}_random.onnx"
        return export_onnx(model, out)
    out = (cache_dir or weights.parent) / (weights.stem + ".onnx")
    stamp_path = out.with_suffix(".onnx.json")
    stamp = _stamp(weights, model.cfg)
    try:
        if out.is_file() and stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
            log.info("ONNX export up to date: %s", out)
            return out
        log.info("exporting ONNX to %s", out)
        export_onnx(model, out)
        stamp_path.write_text(json.dumps(stamp, indent=1))
        return out
    except OSError as exc:  # read-only weights folder: export into a temporary folder instead
        log.warning("cannot write ONNX cache next to %s (%s); exporting to a temporary folder", weights, exc)
        return export_onnx(model, Path(tempfile.mkdtemp(prefix="lgm_pose_onnx_")) / out.name)
