"""COCO keypoint evaluation engine: boxes -> the one top-down path (scoring, OKS-NMS) -> COCOeval.

Pure (no web imports) so the CLI and the service's /eval endpoints share it. Call `evaluate_coco`
with a runner (an nn.Module or any callable batch -> heatmaps), a progress callback and a cancel check.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.eval.bootstrap import bootstrap_ap
from model.eval.coco import (
    detection_boxes,
    gt_boxes,
    load_coco,
    score_results,
    to_records,
    write_results,
)
from model.eval.predict import ImagePersons, ProgressFn, StopFn, predict_images
from model.inference.runners import as_runner
from model.inference.topdown import ScoringRule, TopDown, xywh_to_xyxy

BoxSource = str | Path | list[dict[str, Any]]


def image_persons(topdown: TopDown, boxes: list[dict[str, Any]], file_names: dict[int, str]) -> list[ImagePersons]:
    """COCO boxes ({image_id, bbox xywh, score}) grouped by image, with their crops."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for box in boxes:
        by_image.setdefault(box["image_id"], []).append(box)
    items = []
    for image_id, group in by_image.items():
        xyxy = xywh_to_xyxy(np.array([b["bbox"] for b in group]))
        centers, sizes = topdown.centers_sizes(xyxy)
        items.append(ImagePersons(file_names[image_id], centers, sizes, xyxy, np.array([b["score"] for b in group]),
                                  [{"image_id": image_id} for _ in group]))
    return items


def _select_images(all_ids: Sequence[int], image_ids: Sequence[int] | None, max_images: int | None) -> list[int]:
    ids = sorted(all_ids) if image_ids is None else [i for i in image_ids if i in set(all_ids)]
    return ids[:max_images] if max_images is not None else ids


def evaluate_coco(model_runner: Any, ann_file: str | Path, image_dir: str | Path,
                  boxes: BoxSource = "gt", flip: bool = False, batch_size: int = 32,
                  progress: ProgressFn | None = None, should_stop: StopFn | None = None, *,
                  device: str = "cpu", det_score_threshold: float = 0.0, rule: ScoringRule | None = None,
                  image_ids: Sequence[int] | None = None, max_images: int | None = None,
                  results_path: str | Path | None = None, bootstrap: int = 0) -> dict[str, Any]:
    """Evaluate a COCO-17 heatmap model (nn.Module or Runner) on a COCO person-keypoint file; JSON-able result.

    boxes: 'gt' (non-crowd persons with keypoints) or a COCO detection-results json / list (category 1,
    score >= det_score_threshold). Poses go through `TopDown` with the common scoring rule (`rule`).
    progress(done, total) is called per batch (in persons); when should_stop() turns true the run ends early
    with 'cancelled': True and no table. An unreadable image is listed in 'skipped_images' and its persons
    count as missed. The keypoint results are written to `results_path` (default: a new temporary file).
    `bootstrap` > 0: a 95% interval of AP over that many resamples of the images ('AP_ci95').
    """
    runner = as_runner(model_runner, device)
    runner.meta.require("coco", "COCO evaluation")
    topdown = TopDown(runner.meta, flip, rule)
    in_h, in_w = runner.meta.codec.input_hw
    coco = load_coco(ann_file)
    ids = _select_images(coco.getImgIds(), image_ids, max_images)
    box_list = gt_boxes(coco, ids) if isinstance(boxes, str) and boxes == "gt" else \
        detection_boxes(boxes, ids, det_score_threshold)
    items = image_persons(topdown, box_list, {i: coco.imgs[i]["file_name"] for i in ids})
    pred = predict_images(topdown, runner, items, image_dir, batch_size, progress, should_stop)
    records = [r for item, poses in pred.images for r in to_records(
        [item.meta[0]["image_id"]] * len(poses), poses.keypoints, poses.joint_scores, poses.scores)]
    if results_path is None:
        with tempfile.NamedTemporaryFile("w", prefix="lgm_pose_keypoints_", suffix=".json", delete=False) as tmp:
            results_path = tmp.name
    write_results(results_path, records)
    result: dict[str, Any] = {
        "dataset": "coco", "ann_file": str(ann_file), "image_dir": str(image_dir), "flip": flip,
        "boxes": boxes if isinstance(boxes, str) else (str(boxes) if isinstance(boxes, Path) else "list"),
        "input_hw": [in_h, in_w], "cancelled": pred.cancelled, "table": None, "summary": None,
        "counts": {"images": len(ids), "persons": len(box_list), "persons_predicted": pred.persons_predicted,
                   "results_after_nms": len(records), "skipped_images": len(pred.skipped_images)},
        "skipped_images": pred.skipped_images,
        "throughput": {"seconds": round(pred.seconds, 3),
                       "persons_per_s": round(pred.persons_predicted / pred.seconds, 2) if pred.seconds > 0 else 0.0},
        "results_path": str(results_path),
    }
    if not pred.cancelled:
        scored = score_results(coco, records, ids)
        result["table"], result["summary"] = scored["stats"], scored["summary"]
        if bootstrap:
            result["AP_ci95"] = list(bootstrap_ap(coco, records, ids, bootstrap))
    return result


def evaluate_results_file(ann_file: str | Path, results: str | Path | list[dict[str, Any]],
                          image_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """Score an existing COCO keypoint results json (or list) against an annotation file with COCOeval."""
    scored = score_results(ann_file, results, image_ids)
    return {"dataset": "coco", "ann_file": str(ann_file), "table": scored["stats"], "summary": scored["summary"],
            "counts": {"results": scored["num_results"]},
            "results_path": str(results) if isinstance(results, str | Path) else None}


def save_json(path: str | Path, data: Any) -> Path:
    """Write JSON (creating the folder) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path
