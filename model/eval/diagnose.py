"""Where LGM-Pose loses: per-person analysis with ground-truth boxes against two YOLO11n-pose references.

Rows: LGM-Pose on each ground-truth person's crop (the one top-down path, flip as served); YOLO11n-pose's
whole-image keypoints matched to the ground-truth persons (best OKS); YOLO11n-pose run top-down on each
person's padded crop enlarged to its input size ("teacher with zoom"). Per row: official AP (pycocotools)
with a bootstrap interval, per-joint error (median distance / box height on labelled joints), and mean OKS
by person size, by number of labelled joints and by occlusion (box IoU > 0.1 with another person).
LGM-Pose also gets the effect of its instance scoring: box score only, the rule without OKS-NMS, the rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from model.data import geometry
from model.data.datasets import COCO
from model.data.images import read_image
from model.data.layout import resolve_split, split_data_arg
from model.data.matching import oks_on_labelled
from model.eval.bootstrap import bootstrap_ap
from model.eval.coco import clip_box, gt_boxes, load_coco, score_results, to_records
from model.eval.coco_engine import image_persons
from model.eval.predict import predict_images
from model.inference.runners import TorchRunner
from model.inference.topdown import ScoringRule, TopDown, xywh_to_xyxy
from model.inference.yolo import load_yolo
from model.nn.checkpoint import load_model

SIZE_BINS = {"small (<32^2 px)": (0, 32**2), "medium": (32**2, 96**2), "large (>96^2 px)": (96**2, 1e12)}
JOINT_BINS = {"1-5 joints": (1, 5), "6-10 joints": (6, 10), "11-17 joints": (11, 17)}


def _persons(coco, ids: list[int]) -> list[dict[str, Any]]:
    """Ground-truth persons with their clipped box, area, labelled-joint count and overlap with others."""
    persons: list[dict[str, Any]] = []
    by_image: dict[int, list[int]] = {}
    for image_id in ids:  # the persons of gt_boxes, in its order
        info = coco.imgs[image_id]
        for ann in coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) <= 0 or ann.get("category_id", 1) != 1:
                continue
            box = clip_box(ann["bbox"], info["width"], info["height"])
            if box is None:
                continue
            xyxy = xywh_to_xyxy(np.array(box))[0]
            by_image.setdefault(image_id, []).append(len(persons))
            persons.append({"ann": ann, "box": xyxy, "gt": np.array(ann["keypoints"], float).reshape(17, 3),
                            "area": float(ann["area"]), "joints": int(ann["num_keypoints"]),
                            "height": xyxy[3] - xyxy[1]})
    for group in by_image.values():
        for n in group:
            a = persons[n]["box"]
            ious = [geometry.box_iou(a, persons[m]["box"]) for m in group if m != n]
            persons[n]["occluded"] = bool(ious and max(ious) > 0.1)
    return persons


def lgm_rows(weights: str, files, ids: list[int], persons: list[dict], flip: bool) -> dict[str, Any]:
    """LGM-Pose on the ground-truth boxes: per-person poses, and the records of the three scoring variants."""
    runner = TorchRunner(load_model(weights))
    coco = load_coco(files.annotation)
    names = {i: coco.imgs[i]["file_name"] for i in ids}
    raw = TopDown(runner.meta, flip, ScoringRule(oks_nms_threshold=None))
    boxes = gt_boxes(coco, ids)
    pred = predict_images(raw, runner, image_persons(raw, boxes, names), files.images)
    poses = [(item.meta[0]["image_id"], p) for item, p in pred.images]
    keypoints = np.concatenate([p.keypoints for _, p in poses])
    scores = np.concatenate([p.joint_scores for _, p in poses])
    image_ids = [i for i, p in poses for _ in range(len(p))]
    assert len(keypoints) == len(persons), "one pose per ground-truth person"
    rule = TopDown(runner.meta, flip)
    variants = {"box score only": to_records(image_ids, keypoints, scores, [1.0] * len(image_ids)),
                "scoring rule, no OKS-NMS": to_records(image_ids, keypoints, scores,
                                                       np.concatenate([p.scores for _, p in poses]))}
    nms = []
    for image_id, p in poses:
        kept = rule.score(p.keypoints, p.joint_scores, p.boxes, p.box_scores, raw.centers_sizes(p.boxes)[1])
        nms += to_records([image_id] * len(kept), kept.keypoints, kept.joint_scores, kept.scores)
    variants["scoring rule + OKS-NMS (served)"] = nms
    return {"keypoints": keypoints, "records": nms, "variants": variants}


def yolo_whole_image(yolo, files, coco, ids: list[int], persons: list[dict], imgsz: int):
    """YOLO11n-pose on whole images: all its records, and per person the matched pose (best OKS) or None."""
    records, matched, matched_records = [], [None] * len(persons), []
    by_image: dict[int, list[int]] = {}
    for n, p in enumerate(persons):
        by_image.setdefault(p["ann"]["image_id"], []).append(n)
    for image_id in tqdm(ids, desc="yolo11n-pose", unit="img"):
        r = yolo.predict(str(files.images / coco.imgs[image_id]["file_name"]), imgsz=imgsz, conf=0.25, classes=[0],
                         verbose=False)[0]
        if r.keypoints is None or len(r.boxes) == 0:
            continue
        xy, conf, box_conf = (r.keypoints.xy.cpu().numpy(), r.keypoints.conf.cpu().numpy(),
                              r.boxes.conf.cpu().numpy())
        records += to_records([image_id] * len(xy), xy, conf, box_conf)
        used: set[int] = set()
        for n in by_image.get(image_id, []):
            cands = [(oks_on_labelled(persons[n]["gt"], xy[d], persons[n]["area"]), d) for d in range(len(xy))
                     if d not in used]
            if cands and max(cands)[0] > 0.1:
                best = max(cands)[1]
                used.add(best)
                matched[n] = xy[best]
                matched_records += to_records([image_id], xy[best][None], conf[best][None], [box_conf[best]])
    return records, matched, matched_records


def yolo_zoomed(yolo, files, coco, persons: list[dict], imgsz: int):
    """YOLO11n-pose on each person's padded crop enlarged to `imgsz`; keypoints mapped back to the image."""
    out, records = [None] * len(persons), []
    for n, p in enumerate(tqdm(persons, desc="teacher with zoom", unit="person")):
        image = read_image(files.images / coco.imgs[p["ann"]["image_id"]]["file_name"])
        x1, y1, x2, y2 = p["box"]
        center, size = geometry.box_to_center_size((x1, y1, x2 - x1, y2 - y1), (x2 - x1) / max(y2 - y1, 1e-6))
        scale = imgsz / max(size)
        out_wh = (max(32, int(round(size[0] * scale))), max(32, int(round(size[1] * scale))))
        matrix = geometry.warp_matrix(center, size, out_wh)
        crop = cv2.warpAffine(image, matrix, out_wh, flags=cv2.INTER_LINEAR)
        r = yolo.predict(crop, imgsz=imgsz, conf=0.1, classes=[0], verbose=False)[0]
        if r.keypoints is None or len(r.boxes) == 0:
            continue
        target = geometry.apply(matrix, p["box"].reshape(2, 2)).reshape(4)
        best = int(np.argmax([geometry.box_iou(b, target) for b in r.boxes.xyxy.cpu().numpy()]))
        xy = geometry.apply(geometry.invert(matrix), r.keypoints.xy.cpu().numpy()[best])
        out[n] = xy
        records += to_records([p["ann"]["image_id"]], xy[None], r.keypoints.conf.cpu().numpy()[best][None],
                              [float(r.boxes.conf[best])])
    return out, records


def breakdown(poses: list[np.ndarray | None], persons: list[dict]) -> dict[str, Any]:
    """Mean OKS by size, labelled joints and occlusion; per-joint median error / box height."""
    scores = np.array([oks_on_labelled(q["gt"], p, q["area"]) if p is not None else 0.0 for p, q in zip(poses, persons,
                                                                                             strict=True)])

    def mean(mask: np.ndarray) -> dict[str, float]:
        return {"persons": int(mask.sum()), "mean_OKS": round(float(scores[mask].mean()), 3) if mask.any() else None}

    areas = np.array([q["area"] for q in persons])
    joints = np.array([q["joints"] for q in persons])
    occluded = np.array([q["occluded"] for q in persons])
    per_joint = {}
    for j, name in enumerate(COCO.joint_names):
        d = [np.linalg.norm(p[j] - q["gt"][j, :2]) / q["height"] for p, q in zip(poses, persons, strict=True)
             if p is not None and q["gt"][j, 2] > 0]
        per_joint[name] = round(float(np.median(d)), 3) if d else None
    return {"found": int(sum(p is not None for p in poses)), "mean_OKS": round(float(scores.mean()), 3),
            "by_size": {k: mean((areas >= lo) & (areas < hi)) for k, (lo, hi) in SIZE_BINS.items()},
            "by_joints": {k: mean((joints >= lo) & (joints <= hi)) for k, (lo, hi) in JOINT_BINS.items()},
            "by_occlusion": {"overlapped": mean(occluded), "alone": mean(~occluded)},
            "per_joint_error": per_joint}


def diagnose(weights: str, data: str, flip: bool = True, yolo_weights: str | None = None, imgsz: int = 640,
             draws: int = 500) -> dict[str, Any]:
    data_dir, split = split_data_arg(data, None)
    files = resolve_split(data_dir, split, "val2017")
    coco = load_coco(files.annotation)
    ids = sorted(coco.getImgIds())
    persons = _persons(coco, ids)
    lgm = lgm_rows(weights, files, ids, persons, flip)
    yolo = load_yolo(yolo_weights)
    whole, matched, matched_records = yolo_whole_image(yolo, files, coco, ids, persons, imgsz)
    zoomed, zoom_records = yolo_zoomed(yolo, files, coco, persons, imgsz)

    def ap(records: list[dict]) -> dict[str, Any]:
        stats = score_results(coco, records, ids)["stats"]
        return {**{k: round(v, 4) for k, v in stats.items()}, "AP_ci95": list(bootstrap_ap(coco, records, ids, draws))}

    rows = {
        "LGM-Pose, ground-truth boxes": {**ap(lgm["records"]), **breakdown(list(lgm["keypoints"]), persons)},
        "YOLO11n-pose, whole image (all detections)": ap(whole),
        "YOLO11n-pose, whole image, matched to GT persons": {**ap(matched_records), **breakdown(matched, persons)},
        "YOLO11n-pose, teacher with zoom (GT crops)": {**ap(zoom_records), **breakdown(zoomed, persons)},
    }
    scoring = {name: round(score_results(coco, recs, ids)["stats"]["AP"], 4) for name, recs in lgm["variants"].items()}
    return {"data": str(files.annotation), "weights": weights, "flip": flip, "persons": len(persons),
            "rows": rows, "lgm_scoring_effect_AP": scoring}


def markdown(result: dict[str, Any]) -> str:
    """The diagnosis as markdown tables (for the model card)."""
    rows = result["rows"]
    lines = ["| row | AP (95% interval) | APM | APL | mean OKS | small | medium | large | 1-5 j | 6-10 j | 11-17 j "
             "| overlapped | alone |", "|---|" + "---|" * 12]
    for name, r in rows.items():
        b = [r.get("by_size", {}), r.get("by_joints", {}), r.get("by_occlusion", {})]
        cells = [v.get("mean_OKS") for d in b for v in d.values()]
        fmt = ["-" if c is None else f"{c:.3f}" for c in cells] or ["-"] * 8
        lines.append(f"| {name} | {r['AP']:.3f} ({r['AP_ci95'][0]:.3f}-{r['AP_ci95'][1]:.3f}) | {r['APM']:.3f} | "
                     f"{r['APL']:.3f} | {r.get('mean_OKS', '-')} | " + " | ".join(fmt + ["-"] * (8 - len(fmt))) + " |")
    joined = [n for n in rows if "per_joint_error" in rows[n]]
    lines += ["", "| joint | " + " | ".join(joined) + " |", "|---|" + "---|" * len(joined)]
    for joint in COCO.joint_names:
        vals = [rows[n]["per_joint_error"][joint] for n in joined]
        lines.append(f"| {joint} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals) + " |")
    lines += ["", "| LGM-Pose instance scoring | AP |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in result["lgm_scoring_effect_AP"].items()]
    return "\n".join(lines)


def write(result: dict[str, Any], out: str | Path) -> None:
    import json

    Path(out).write_text(json.dumps(result, indent=2))
