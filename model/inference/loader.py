"""Load the LGM-Pose network to serve, say loudly which weights those are, and build its runner.

Missing weights file -> random initial weights with a loud warning (log, /readyz, /metrics). For the
onnxruntime backend the model is exported at start-up to `<weights>.onnx` (or `onnx_cache_dir`), again
whenever the weights file, the config or the exporter changed (a JSON stamp sits beside the export).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.inference.runners import OnnxRunner, Runner, TorchRunner
from model.nn.checkpoint import load_model, read_checkpoint
from model.nn.export import export_onnx
from model.nn.network import LGMPose, NetConfig, build_model

log = logging.getLogger("lgm_pose.model")
DEFAULT_CONFIG = "coco_256x192"
BANNER = "!" * 100
DEFAULT_EXPORT_DIR = Path(__file__).resolve().parents[2] / "weights"  # where exports of packaged weights go
EXPORT_FORMAT = 2  # bump when the export changes (2: dataset metadata and codec in the ONNX metadata)


@dataclass
class ModelInfo:
    """What /readyz and the model-info metric report."""

    config: str
    input_hw: tuple[int, int]
    heatmap_hw: tuple[int, int]
    num_joints: int
    dataset: str
    weights: str
    weights_loaded: bool  # False: random initial weights
    backend: str
    device: str
    onnx_path: str | None = None
    checkpoint_meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["weights_state"] = "loaded from file" if self.weights_loaded else "RANDOM INIT (untrained)"
        return data


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


def build_runner(weights: Path, config: str | None = None, backend: str = "onnxruntime", device: str = "cpu",
                 fp16: bool = False, threads: int | None = None,
                 onnx_cache_dir: Path | None = None) -> tuple[Runner, ModelInfo]:
    """Load the network and wrap it in the backend; the runner carries the model's dataset metadata and codec."""
    model, loaded, meta = load_network(weights, config)
    cfg = model.cfg
    weights_path = Path(weights)
    onnx_path: Path | None = None
    if backend == "onnxruntime":
        if device != "cpu":
            log.warning("backend onnxruntime runs on cpu here; device=%s ignored", device)
        onnx_path = onnx_export_cached(model, weights_path if loaded else None, onnx_cache_dir)
        runner: Runner = OnnxRunner(onnx_path, threads)
        device = "cpu"
    else:
        runner = TorchRunner(model, device, fp16)
    name = str(weights_path) if loaded else f"random-init (missing {weights_path})"
    codec = runner.meta.codec
    info = ModelInfo(config=cfg.name, input_hw=tuple(codec.input_hw), heatmap_hw=tuple(codec.heatmap_hw),
                     num_joints=runner.meta.dataset.num_joints, dataset=runner.meta.dataset.name, weights=name,
                     weights_loaded=loaded, backend=backend, device=device,
                     onnx_path=str(onnx_path) if onnx_path else None, checkpoint_meta=meta)
    return runner, info


def build_detector(weights: Path, device: str = "cpu", imgsz: int = 640, fp16: bool = False,
                   backend: str = "onnxruntime", cache_dir: Path | None = None, threads: int | None = None):
    """The person detector: ONNX Runtime over a cached export (CPU), or Ultralytics' PyTorch model (CUDA)."""
    from model.inference.detector import PersonDetector
    from model.inference.onnx_detector import OnnxPersonDetector, export_yolo_onnx

    if backend == "onnxruntime":
        onnx = export_yolo_onnx(weights, cache_dir or DEFAULT_EXPORT_DIR)
        return OnnxPersonDetector(onnx, imgsz, threads)
    return PersonDetector(weights, device, imgsz, fp16)
