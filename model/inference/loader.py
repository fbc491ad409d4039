"""Build what the service runs: the pose runner and the person detector, from checkpoints or from ONNX files.

A `.onnx` pose model (an `lgm-pose export`, metadata inside) or detector is served by ONNX Runtime without
PyTorch; a checkpoint is loaded with PyTorch (`torch_loader`) and, for the onnxruntime backend, exported once
to a cached ONNX file. Missing pose weights -> random initial weights with a loud warning.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model.data.meta import CONFIG_KEY
from model.inference.runners import OnnxRunner, Runner

log = logging.getLogger("lgm_pose.model")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_EXPORT_DIR = REPO / "weights"  # where exports of packaged weights go


def public_path(path: str | Path) -> str:
    """A path as responses may show it: relative to the repository when inside it, else the file name only."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return path.name


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
    onnx_path: str | None = None  # the cached export, for the start-up log (not on /readyz)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_runner(weights: Path, config: str | None = None, backend: str = "onnxruntime", device: str = "cpu",
                 fp16: bool = False, threads: int | None = None,
                 onnx_cache_dir: Path | None = None) -> tuple[Runner, ModelInfo]:
    """The pose runner for `weights` (a checkpoint, or an ONNX export served without PyTorch) and what it serves."""
    weights_path = Path(weights)
    if weights_path.suffix == ".onnx":
        runner: Runner = OnnxRunner(weights_path, threads)
        stored = runner.session.get_modelmeta().custom_metadata_map.get(CONFIG_KEY)
        name = json.loads(stored)["name"] if stored else weights_path.stem
        return runner, _info(runner, name, public_path(weights_path), True, "onnxruntime", "cpu", weights_path)
    from model.inference.runners import TorchRunner
    from model.inference.torch_loader import load_network, onnx_export_cached

    model, loaded, _ = load_network(weights_path, config)
    onnx_path: Path | None = None
    if backend == "onnxruntime":
        if device != "cpu":
            log.warning("backend onnxruntime runs on cpu here; device=%s ignored", device)
        onnx_path = onnx_export_cached(model, weights_path if loaded else None, onnx_cache_dir)
        runner = OnnxRunner(onnx_path, threads)
        device = "cpu"
    else:
        runner = TorchRunner(model, device, fp16)
    shown = public_path(weights_path) if loaded else f"random-init (missing {public_path(weights_path)})"
    return runner, _info(runner, model.cfg.name, shown, loaded, backend, device, onnx_path)


def _info(runner: Runner, config: str, weights: str, loaded: bool, backend: str, device: str,
          onnx_path: Path | None) -> ModelInfo:
    codec = runner.meta.codec
    return ModelInfo(config=config, input_hw=tuple(codec.input_hw), heatmap_hw=tuple(codec.heatmap_hw),
                     num_joints=runner.meta.dataset.num_joints, dataset=runner.meta.dataset.name, weights=weights,
                     weights_loaded=loaded, backend=backend, device=device,
                     onnx_path=public_path(onnx_path) if onnx_path else None)


def build_detector(weights: Path, device: str = "cpu", imgsz: int = 640, fp16: bool = False,
                   backend: str = "onnxruntime", cache_dir: Path | None = None, threads: int | None = None):
    """The person detector: ONNX Runtime over an ONNX file or a cached export (CPU), or Ultralytics' PyTorch model."""
    from model.inference.onnx_detector import OnnxPersonDetector, export_yolo_onnx

    if Path(weights).suffix == ".onnx":
        return OnnxPersonDetector(weights, imgsz, threads)
    if backend == "onnxruntime":
        onnx = export_yolo_onnx(weights, cache_dir or DEFAULT_EXPORT_DIR)
        return OnnxPersonDetector(onnx, imgsz, threads)
    from model.inference.detector import PersonDetector

    return PersonDetector(weights, device, imgsz, fp16)
