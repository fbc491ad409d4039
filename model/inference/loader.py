"""Build what the service runs: the pose runner and the person detector, from checkpoints or from ONNX files.

A `.onnx` pose model (an `lgm-pose export`, metadata inside) or detector is served by a CPU runtime (ONNX Runtime
or OpenVINO) without PyTorch; a checkpoint is loaded with PyTorch (`torch_loader`) and, for those runtimes, exported
once to a cached ONNX file. Backend `auto` chooses the runtime and precision at start-up (`runtime_choice`).
Missing pose weights -> random initial weights with a loud warning.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.data.meta import CONFIG_KEY, META_KEY, PoseMeta
from model.inference.runners import OnnxRunner, Runner
from model.inference.runtime_choice import Choice, choose_engine

log = logging.getLogger("lgm_pose.model")
REPO = Path(__file__).resolve().parents[2]
CPU_RUNTIMES = ("onnxruntime", "openvino", "auto")  # backends that serve an ONNX file
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
    precision: str = "f32"  # f32, or bf16/int8 accepted by the offline check (PyTorch on CUDA: fp16 or fp32)
    chosen_because: str | None = None  # how the runtime and precision were chosen (auto's trial, or pinned)
    onnx_path: str | None = None  # the cached export, for the start-up log (not on /readyz)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _onnx_backend(backend: str) -> str:
    """The CPU runtime an ONNX file is served by: a `torch` backend (a checkpoint's) means ONNX Runtime for it."""
    return "onnxruntime" if backend == "torch" else backend


def _pose_sample(engine) -> np.ndarray:
    """A batch of one crop at the model's input size, for auto's timed trial."""
    h, w = PoseMeta.from_json(engine.metadata(META_KEY)).codec.input_hw
    return np.random.default_rng(0).standard_normal((1, 3, h, w), dtype=np.float32)


def onnx_runner(onnx_path: Path, backend: str, precision: str, threads: int | None) -> tuple[OnnxRunner, Choice]:
    """The pose runner of an ONNX export in the runtime and precision `backend`/`precision` name or `auto` picks."""
    engine, choice = choose_engine(onnx_path, _pose_sample, backend, precision, threads)
    return OnnxRunner(onnx_path, engine=engine), choice


def build_runner(weights: Path, config: str | None = None, backend: str = "onnxruntime", device: str = "cpu",
                 fp16: bool = False, threads: int | None = None, onnx_cache_dir: Path | None = None,
                 precision: str = "f32") -> tuple[Runner, ModelInfo]:
    """The pose runner for `weights` (a checkpoint, or an ONNX export served without PyTorch) and what it serves."""
    weights_path = Path(weights)
    if weights_path.suffix == ".onnx":
        runner, choice = onnx_runner(weights_path, _onnx_backend(backend), precision, threads)
        stored = runner.engine.metadata(CONFIG_KEY)
        name = json.loads(stored)["name"] if stored else weights_path.stem
        return runner, _info(runner, name, public_path(weights_path), True, choice, "cpu", weights_path)
    from model.inference.runners import TorchRunner
    from model.inference.torch_loader import load_network, onnx_export_cached

    model, loaded, _ = load_network(weights_path, config)
    onnx_path: Path | None = None
    if backend in CPU_RUNTIMES:
        if device != "cpu":
            log.warning("backend %s runs on cpu here; device=%s ignored", backend, device)
        onnx_path = onnx_export_cached(model, weights_path if loaded else None, onnx_cache_dir)
        runner, choice = onnx_runner(onnx_path, backend, precision, threads)
        device = "cpu"
    else:
        runner = TorchRunner(model, device, fp16)
        choice = Choice("torch", "fp16" if runner.fp16 else "f32", "pinned by the settings")
    shown = public_path(weights_path) if loaded else f"random-init (missing {public_path(weights_path)})"
    return runner, _info(runner, model.cfg.name, shown, loaded, choice, device, onnx_path)


def _info(runner: Runner, config: str, weights: str, loaded: bool, choice: Choice, device: str,
          onnx_path: Path | None) -> ModelInfo:
    codec = runner.meta.codec
    return ModelInfo(config=config, input_hw=tuple(codec.input_hw), heatmap_hw=tuple(codec.heatmap_hw),
                     num_joints=runner.meta.dataset.num_joints, dataset=runner.meta.dataset.name, weights=weights,
                     weights_loaded=loaded, backend=choice.runtime, device=device, precision=choice.precision,
                     chosen_because=choice.reason, onnx_path=public_path(onnx_path) if onnx_path else None)


def _detector_sample(imgsz: int):
    return lambda engine: np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)


def build_detector(weights: Path, device: str = "cpu", imgsz: int = 640, fp16: bool = False,
                   backend: str = "onnxruntime", cache_dir: Path | None = None, threads: int | None = None,
                   precision: str = "f32"):
    """The person detector: a CPU runtime (ONNX Runtime or OpenVINO, or `auto`'s choice) over an ONNX file or a
    cached export, or Ultralytics' PyTorch model. `choice` on the detector says how its runtime was chosen."""
    from model.inference.onnx_detector import OnnxPersonDetector, export_yolo_onnx

    if Path(weights).suffix == ".onnx" or backend in CPU_RUNTIMES:
        onnx = Path(weights) if Path(weights).suffix == ".onnx" else export_yolo_onnx(weights, cache_dir or
                                                                                      DEFAULT_EXPORT_DIR)
        engine, choice = choose_engine(onnx, _detector_sample(imgsz), _onnx_backend(backend), precision, threads)
        detector = OnnxPersonDetector(onnx, imgsz, engine=engine)
        detector.choice = choice.reason
        return detector
    from model.inference.detector import PersonDetector

    return PersonDetector(weights, device, imgsz, fp16)
