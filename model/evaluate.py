"""COCO keypoint evaluation engine: boxes -> top-down predictions -> rescoring, OKS-NMS -> COCOeval.

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
import torch

from model import geometry
from model.eval_coco import (
    OKS_NMS_THRESHOLD,
    detection_boxes,
    gt_boxes,
    load_coco,
    nms_per_image,
    rescore,
    score_results,
    to_records,
    write_results,
)
from model.eval_infer import Person, ProgressFn, Runner, StopFn, as_runner, predict_persons, runner_input_hw

BoxSource = str | Path | list[dict[str, Any]]


def _persons(boxes: list[dict[str, Any]], file_names: dict[int, str], aspect_wh: float) -> list[Person]:
    persons = []
    for box in boxes:
        center, size = geometry.box_to_center_size(box["bbox"], aspect_wh)
        persons.append(Person(file_names[box["image_id"]], center, size,
                              {"image_id": box["image_id"], "box_score": box["score"], "area": float(size.prod())}))
    return persons


def _select_images(all_ids: Sequence[int], image_ids: Sequence[int] | None, max_images: int | None) -> list[int]:
    ids = sorted(all_ids) if image_ids is None else [i for i in image_ids if i in set(all_ids)]
    return ids[:max_images] if max_images is not None else ids


def evaluate_coco(model_runner: torch.nn.Module | Runner, ann_file: str | Path, image_dir: str | Path,
                  boxes: BoxSource = "gt", flip: bool = False, batch_size: int = 32,
                  progress: ProgressFn | None = None, should_stop: StopFn | None = None, *,
                  input_hw: Sequence[int] | None = None, device: str = "cpu", det_score_threshold: float = 0.0,
                  oks_nms_threshold: float = OKS_NMS_THRESHOLD, image_ids: Sequence[int] | None = None,
                  max_images: int | None = None, results_path: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a 17-joint heatmap model on a COCO person-keypoint annotation file; JSON-able result.

    boxes: 'gt' (non-crowd persons with keypoints) or a COCO detection-results json / list (category 1,
    score >= det_score_threshold). progress(done, total) is called per image (in persons); when
    should_stop() turns true the run ends early with 'cancelled': True and no table. An unreadable image
    is listed in 'skipped_images' and its persons count as missed. The keypoint results are written to
    `results_path` (default: a new temporary file), returned as 'results_path'.
    """
    runner = as_runner(model_runner, device)
    in_h, in_w = runner_input_hw(runner, input_hw)
    coco = load_coco(ann_file)
    ids = _select_images(coco.getImgIds(), image_ids, max_images)
    box_list = gt_boxes(coco, ids) if isinstance(boxes, str) and boxes == "gt" else \
        detection_boxes(boxes, ids, det_score_threshold)
    persons = _persons(box_list, {i: coco.imgs[i]["file_name"] for i in ids}, in_w / in_h)
    pred = predict_persons(runner, persons, image_dir, (in_h, in_w), flip, batch_size, progress, should_stop)
    if pred.keypoints.shape[0] and pred.keypoints.shape[1] != 17:
        raise ValueError(f"COCO evaluation needs 17 joints, the model predicts {pred.keypoints.shape[1]}")
    meta = [p.meta for p in pred.persons]
    scores = rescore(np.array([m["box_score"] for m in meta]), pred.scores) if meta else np.zeros(0)
    records = to_records([m["image_id"] for m in meta], pred.keypoints, pred.scores, scores)
    records = nms_per_image(records, [m["area"] for m in meta], oks_nms_threshold)
    if results_path is None:
        with tempfile.NamedTemporaryFile("w", prefix="lgm_pose_keypoints_", suffix=".json", delete=False) as tmp:
            results_path = tmp.name
    write_results(results_path, records)
    result: dict[str, Any] = {
        "dataset": "coco", "ann_file": str(ann_file), "image_dir": str(image_dir), "flip": flip,
        "boxes": boxes if isinstance(boxes, str) else (str(boxes) if isinstance(boxes, Path) else "list"),
        "input_hw": [in_h, in_w], "cancelled": pred.cancelled, "table": None, "summary": None,
        "counts": {"images": len(ids), "persons": len(persons), "persons_predicted": len(pred.persons),
                   "results_after_nms": len(records), "skipped_images": len(pred.skipped_images)},
        "skipped_images": pred.skipped_images,
        "throughput": {"seconds": round(pred.seconds, 3),
                       "persons_per_s": round(len(pred.persons) / pred.seconds, 2) if pred.seconds > 0 else 0.0},
        "results_path": str(results_path),
    }
    if not pred.cancelled:
        scored = score_results(coco, records, ids)
        result["table"], result["summary"] = scored["stats"], scored["summary"]
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
