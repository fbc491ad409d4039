"""Top-down inference shared by the COCO and MPII evaluations: crop persons, batch, forward, flip, decode.

A *runner* is any callable mapping a float32 batch (B, 3, H, W) to heatmaps (B, K, h, w) as numpy;
`TorchRunner` wraps an nn.Module, and an ONNX Runtime session can be wrapped the same way. The runner
should expose `input_hw` (H, W); otherwise the evaluation functions take it as an argument.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from model import codec, geometry

Runner = Callable[[np.ndarray], np.ndarray]
ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


class TorchRunner:
    """Plain-callable wrapper of a heatmap network: numpy batch in, numpy heatmaps out, no gradients.

    Half precision when `fp16` and the device is CUDA.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", fp16: bool = False) -> None:
        self.device = torch.device(device)
        self.fp16 = bool(fp16 and self.device.type == "cuda")
        model = model.to(self.device).eval()
        self.model = model.half() if self.fp16 else model
        cfg = getattr(model, "cfg", None)
        self.input_hw: tuple[int, int] | None = tuple(cfg.input_hw) if cfg is not None else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, non_blocking=True)
        with torch.inference_mode():
            out = self.model(x.half() if self.fp16 else x)
        return out.float().cpu().numpy()


def as_runner(model_or_runner: torch.nn.Module | Runner, device: str = "cpu") -> Runner:
    """An nn.Module becomes a TorchRunner; any other callable is used as it is."""
    if isinstance(model_or_runner, torch.nn.Module):
        return TorchRunner(model_or_runner, device)
    return model_or_runner


def runner_input_hw(runner: Runner, input_hw: Sequence[int] | None) -> tuple[int, int]:
    """The network input (H, W): given explicitly, or read from the runner's `input_hw`."""
    hw = input_hw if input_hw is not None else getattr(runner, "input_hw", None)
    if hw is None:
        raise ValueError("input_hw unknown: pass input_hw=(H, W) or give the runner an input_hw attribute")
    return int(hw[0]), int(hw[1])


@dataclass
class Person:
    """One person to estimate: its image, its crop box (UDP center/size, image pixels) and any metadata."""

    image: str
    center: np.ndarray
    size: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Predictions:
    """Keypoints (N, K, 2) in image pixels and joint scores (N, K) of the persons that were processed."""

    persons: list[Person]
    keypoints: np.ndarray
    scores: np.ndarray
    skipped_images: list[dict[str, str]]
    cancelled: bool
    seconds: float


def read_image(path: Path) -> np.ndarray:
    """BGR image or a ValueError saying why it cannot be used."""
    if not path.is_file():
        raise ValueError("file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError("unreadable image")
    return image


def _forward(runner: Runner, crops: np.ndarray, flip: bool) -> np.ndarray:
    heatmaps = np.asarray(runner(crops), dtype=np.float32)
    if flip:
        flipped = np.asarray(runner(np.ascontiguousarray(crops[..., ::-1])), dtype=np.float32)
        heatmaps = codec.average_flip(heatmaps, flipped)
    return heatmaps


def _to_image(coords: np.ndarray, persons: Sequence[Person], heatmap_wh: tuple[int, int]) -> np.ndarray:
    centers = np.array([p.center for p in persons])
    sizes = np.array([p.size for p in persons])
    return geometry.heatmap_points_to_image(coords, centers, sizes, heatmap_wh)


def predict_persons(runner: Runner, persons: Sequence[Person], image_dir: str | Path, input_hw: tuple[int, int],
                    flip: bool = False, batch_size: int = 32, progress: ProgressFn | None = None,
                    should_stop: StopFn | None = None) -> Predictions:
    """Estimate every person (grouped by image, each image read once); bad images are skipped and listed."""
    start = time.perf_counter()
    image_dir = Path(image_dir)
    in_wh = (input_hw[1], input_hw[0])
    by_image: dict[str, list[Person]] = {}
    for person in persons:
        by_image.setdefault(person.image, []).append(person)
    total, skipped_persons = len(persons), 0
    done: list[Person] = []
    coords: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    pending: list[Person] = []
    crops: list[np.ndarray] = []
    cancelled = False

    def flush() -> None:
        heatmaps = _forward(runner, np.stack(crops), flip)
        xy, sc = codec.decode(heatmaps)
        coords.append(_to_image(xy, pending, (heatmaps.shape[3], heatmaps.shape[2])))
        scores.append(sc)
        done.extend(pending)
        pending.clear()
        crops.clear()
        report()

    def report() -> None:
        if progress is not None:
            progress(len(done) + skipped_persons, total)

    for name, group in by_image.items():
        if should_stop is not None and should_stop():
            cancelled = True
            break
        try:
            image = read_image(image_dir / name)
        except (ValueError, OSError) as exc:
            skipped.append({"image": name, "reason": str(exc)})
            skipped_persons += len(group)
            report()
        else:
            for person in group:
                crops.append(geometry.crop_input(image, person.center, person.size, in_wh))
                pending.append(person)
                if len(crops) >= batch_size:
                    flush()
    if crops and not cancelled:
        flush()
    k = coords[0].shape[1] if coords else 0
    return Predictions(done, np.concatenate(coords) if coords else np.zeros((0, k, 2)),
                       np.concatenate(scores) if scores else np.zeros((0, k)), skipped, cancelled,
                       time.perf_counter() - start)
