"""COCO keypoint evaluation pieces: person boxes, result records, OKS-NMS of records, COCOeval.

The metric itself is pycocotools' COCOeval(iouType='keypoints'); nothing here re-implements it.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from model.inference.topdown import OKS_NMS_THRESHOLD, oks_nms

STAT_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR")  # COCOeval.stats[0..5]


def load_coco(ann_file: str | Path) -> COCO:
    """pycocotools COCO object, without its chatter on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


def clip_box(box: Sequence[float], width: int, height: int) -> list[float] | None:
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(width - 1.0, x1 + max(0.0, w - 1.0)), min(height - 1.0, y1 + max(0.0, h - 1.0))
    return [x1, y1, x2 - x1, y2 - y1] if x2 > x1 and y2 > y1 else None


def gt_boxes(coco: COCO, image_ids: Iterable[int]) -> list[dict[str, Any]]:
    """Boxes of non-crowd persons with at least one labelled keypoint (clipped to the image), score 1."""
    boxes = []
    for image_id in image_ids:
        info = coco.imgs[image_id]
        for ann in coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) <= 0 or ann.get("category_id", 1) != 1:
                continue
            box = clip_box(ann["bbox"], info["width"], info["height"])
            if box is not None:
                boxes.append({"image_id": image_id, "bbox": box, "score": 1.0})
    return boxes


def detection_records(image_id: int, boxes_xyxy: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """A detector's person boxes (x1y1x2y2) on one image as COCO detection results."""
    return [{"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            for (x1, y1, x2, y2), score in zip(np.asarray(boxes_xyxy).tolist(), np.asarray(scores).tolist(),
                                                strict=True)]


def detection_boxes(det_file: str | Path | list[dict[str, Any]], image_ids: Iterable[int],
                    score_threshold: float = 0.0) -> list[dict[str, Any]]:
    """Person boxes from a COCO detection-results json (category 1, score >= threshold) on the given images."""
    dets = json.loads(Path(det_file).read_text()) if isinstance(det_file, str | Path) else det_file
    wanted = set(image_ids)
    return [{"image_id": d["image_id"], "bbox": [float(v) for v in d["bbox"]], "score": float(d.get("score", 1.0))}
            for d in dets
            if d.get("category_id", 1) == 1 and d["image_id"] in wanted
            and float(d.get("score", 1.0)) >= score_threshold and d["bbox"][2] > 0 and d["bbox"][3] > 0]


def to_records(image_ids: Sequence[int], keypoints: np.ndarray, joint_scores: np.ndarray,
               scores: Sequence[float]) -> list[dict[str, Any]]:
    """COCO keypoint result records: {image_id, category_id: 1, keypoints: [x, y, s] * K, score}."""
    records = []
    for image_id, xy, js, score in zip(image_ids, keypoints, joint_scores, scores, strict=True):
        triplets = np.concatenate([np.asarray(xy, dtype=np.float64)[:, :2], np.asarray(js)[:, None]], 1)
        records.append({"image_id": int(image_id), "category_id": 1,
                        "keypoints": [round(float(v), 3) for v in triplets.reshape(-1)], "score": float(score)})
    return records


def nms_per_image(records: list[dict[str, Any]], areas: Sequence[float], threshold: float = OKS_NMS_THRESHOLD,
                  vis_threshold: float | None = None) -> list[dict[str, Any]]:
    """OKS-NMS applied image by image to result records; `areas` are the persons' box areas."""
    by_image: dict[int, list[int]] = {}
    for i, rec in enumerate(records):
        by_image.setdefault(rec["image_id"], []).append(i)
    kept: list[dict[str, Any]] = []
    for idx in by_image.values():
        kps = np.array([records[i]["keypoints"] for i in idx], dtype=np.float64).reshape(len(idx), -1, 3)
        keep = oks_nms(kps, np.array([records[i]["score"] for i in idx]), np.array([areas[i] for i in idx]),
                       threshold, vis_threshold=vis_threshold)
        kept.extend(records[idx[k]] for k in keep)
    return kept


def score_results(gt: str | Path | COCO, results: str | Path | list[dict[str, Any]],
                  image_ids: Iterable[int] | None = None) -> dict[str, Any]:
    """pycocotools COCOeval(iouType='keypoints') of a results list or json file.

    Returns {'stats': {AP, AP50, AP75, APM, APL, AR}, 'summary': COCOeval's printed table, 'num_results'};
    a stat is -1 where COCOeval has no ground truth for it (its own convention).
    `image_ids` restricts the evaluation (default: every image of the annotation file).
    """
    coco = gt if isinstance(gt, COCO) else load_coco(gt)
    if isinstance(results, str | Path):
        results = json.loads(Path(results).read_text())
    ids = sorted(coco.getImgIds() if image_ids is None else set(image_ids))
    wanted = set(ids)
    results = [dict(r) for r in results if r["image_id"] in wanted]  # loadRes edits records in place
    if not results:
        return {"stats": dict.fromkeys(STAT_NAMES, 0.0), "summary": "no results to evaluate", "num_results": 0}
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        dets = coco.loadRes(results)
        evaluator = COCOeval(coco, dets, iouType="keypoints")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats[:6], strict=True)}
    return {"stats": stats, "summary": summary.getvalue().rstrip(), "num_results": len(results)}


def write_results(path: str | Path, records: list[dict[str, Any]]) -> Path:
    """Write result records as a COCO results json (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path
