"""Dataset-scale prediction for the evaluations: the one top-down path over many images, batched across images.

Each image is read once; its persons go through `TopDown.prepare`, one runner call serves the crops of
several images (up to `batch_size`), and `TopDown.decode` scores each image's poses by the common rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.data.images import image_path, read_image
from model.inference.topdown import Poses, PreparedCrops, Runner, TopDown, run_batched

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


@dataclass
class ImagePersons:
    """The persons of one image to estimate: crop centers/sizes, their boxes (x1y1x2y2), scores, metadata."""

    image: str
    centers: np.ndarray
    sizes: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    meta: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.centers)


@dataclass
class Predictions:
    """Per image its persons and their poses (after the scoring rule); what was skipped; how long it took."""

    images: list[tuple[ImagePersons, Poses]]
    skipped_images: list[dict[str, str]]
    cancelled: bool
    seconds: float

    @property
    def persons_predicted(self) -> int:
        return sum(len(persons) for persons, _ in self.images)


def predict_images(topdown: TopDown, runner: Runner, items: Sequence[ImagePersons], image_dir: str | Path,
                   batch_size: int = 32, progress: ProgressFn | None = None,
                   should_stop: StopFn | None = None) -> Predictions:
    """Estimate every person, image by image; unreadable or refused images (`image_path`) are skipped and listed."""
    start = time.perf_counter()
    image_dir = Path(image_dir)
    total = sum(len(item) for item in items)
    done = 0
    out: list[tuple[ImagePersons, Poses]] = []
    skipped: list[dict[str, str]] = []
    pending: list[tuple[ImagePersons, tuple[int, int], PreparedCrops]] = []
    cancelled = False

    def flush() -> None:
        nonlocal done
        heatmaps = run_batched(runner, [prepared.inputs for _, _, prepared in pending])
        for (item, image_wh, prepared), hm in zip(pending, heatmaps, strict=True):
            out.append((item, topdown.decode(prepared, hm, item.boxes, item.box_scores, image_wh)))
            done += len(item)
        pending.clear()
        if progress is not None:
            progress(done, total)

    for item in items:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        try:
            image = read_image(image_path(image_dir, item.image))
        except (ValueError, OSError) as exc:
            skipped.append({"image": item.image, "reason": str(exc)})
            done += len(item)
            if progress is not None:
                progress(done, total)
            continue
        pending.append((item, (image.shape[1], image.shape[0]), topdown.prepare_crops(image, item.centers, item.sizes)))
        if sum(len(p.inputs) for _, _, p in pending) >= batch_size:
            flush()
    if pending and not cancelled:
        flush()
    return Predictions(out, skipped, cancelled, time.perf_counter() - start)
