"""Bootstrap confidence intervals of COCO keypoint AP: resample images (with their persons), rescore with COCOeval.

Persons are resampled in the clusters they come in (an image and all its persons, since matching happens per
image); on single-person sets such as fashion/val and most of coco-mini that is resampling persons. A drawn
image gets a fresh id per draw, so an image drawn twice counts twice, as a bootstrap sample should.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _ap(gt: dict[str, Any], results: list[dict[str, Any]], area_rng: tuple[float, float] | None) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        if not results:
            return 0.0
        evaluator = COCOeval(coco, coco.loadRes(results), iouType="keypoints")
        if area_rng is not None:
            evaluator.params.areaRng, evaluator.params.areaRngLbl = [list(area_rng)], ["subset"]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


def resampled(coco: COCO, results: list[dict[str, Any]], image_ids: Sequence[int],
              rng: np.random.Generator) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One bootstrap draw: the images (and their ground truth and results) drawn with replacement, renumbered."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    images, anns, res = [], [], []
    for new_id, old_id in enumerate(rng.choice(np.asarray(image_ids), len(image_ids)), 1):
        images.append({**coco.imgs[int(old_id)], "id": new_id})
        for ann in coco.imgToAnns.get(int(old_id), []):
            anns.append({**copy.deepcopy(ann), "id": len(anns) + 1, "image_id": new_id})
        res += [{**r, "image_id": new_id} for r in by_image.get(int(old_id), [])]
    return {**coco.dataset, "images": images, "annotations": anns}, res


def bootstrap_ap(coco: COCO, results: list[dict[str, Any]], image_ids: Sequence[int], draws: int = 200,
                 seed: int = 0, area_rng: tuple[float, float] | None = None) -> tuple[float, float]:
    """95% percentile interval of AP over `draws` resamples of the images (optionally one area range only)."""
    rng = np.random.default_rng(seed)
    aps = [_ap(*resampled(coco, [dict(r) for r in results], image_ids, rng), area_rng) for _ in range(draws)]
    lo, hi = np.percentile(aps, [2.5, 97.5])
    return round(float(lo), 4), round(float(hi), 4)
