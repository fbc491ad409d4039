"""Fit the `fused` source's per-joint rule on validation persons, cross-fitted, and score every source.

Every detection of the service's detector (its own keypoints: source `detector`) also gets LGM-Pose's keypoints,
top-down on that same box (source `lgm`). Detections are matched to the annotated persons by box IoU; each joint's
`bias`/`gain` (`model.inference.fusion`) is chosen on a grid to maximise the mean COCO keypoint similarity of the
fused joint over the labelled joints of matched persons. Out-of-fold figures: images split into folds, each fold
fused by the rule fitted on the others; the AP of all three sources (every detection, the served scoring rule and
OKS-NMS) is then pycocotools' over the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.data.datasets import COCO as COCO17
from model.data.geometry import box_iou
from model.data.images import read_image
from model.data.matching import annotation_box
from model.eval.bootstrap import bootstrap_ap
from model.eval.coco import load_coco, score_results, to_records
from model.inference.fusion import Fusion, clip_scores, detector_estimate
from model.inference.topdown import Runner, TopDown, run_batched

BIAS_GRID = np.linspace(-6.0, 6.0, 25)
GAIN_GRID = np.array([0.0, 2.0, 4.0, 8.0, 16.0, 32.0])


@dataclass
class SourcePairs:
    """Every detection on every image with both estimates, and the annotated person it matches (if any)."""

    image_ids: np.ndarray  # (M,)
    boxes: np.ndarray  # (M, 4) x1y1x2y2
    box_scores: np.ndarray  # (M,)
    crop_sizes: np.ndarray  # (M, 2) padded crop sizes (the OKS scale of NMS)
    lgm_xy: np.ndarray  # (M, K, 2)
    lgm_scores: np.ndarray  # (M, K)
    det_xy: np.ndarray  # (M, K, 2)
    det_scores: np.ndarray  # (M, K)
    gt_xy: np.ndarray  # (M, K, 2), NaN where unmatched
    gt_labelled: np.ndarray  # (M, K) bool
    gt_area: np.ndarray  # (M,)


def collect_pairs(ann_file: str | Path, image_dir: str | Path, runner: Runner, topdown: TopDown, detector,
                  conf: float = 0.25, max_persons: int = 20, min_iou: float = 0.5) -> SourcePairs:
    """Both estimates for every detection of `detector` (a `detect_with_keypoints` detector) on every image."""
    coco = load_coco(ann_file)
    rows: list[tuple] = []
    for image_id in tqdm(sorted(coco.getImgIds()), desc="lgm + detector", unit="img"):
        image = read_image(Path(image_dir) / coco.imgs[image_id]["file_name"])
        boxes, scores, kpts = detector.detect_with_keypoints(image, conf, max_persons)
        if not len(boxes):
            continue
        prepared = topdown.prepare(image, boxes)
        heatmaps = run_batched(runner, [prepared.inputs])[0]
        lgm_xy, lgm_s = topdown.keypoints(prepared, heatmaps, (image.shape[1], image.shape[0]))
        det_xy, det_s = detector_estimate(kpts, (image.shape[1], image.shape[0]))  # as the service serves them
        anns = [a for a in coco.imgToAnns[image_id] if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0]
        match = match_by_iou(boxes, anns, min_iou)
        for i in range(len(boxes)):
            gt = np.full((COCO17.num_joints, 3), np.nan)
            area = np.nan
            if i in match:
                gt = np.asarray(match[i]["keypoints"], dtype=np.float64).reshape(-1, 3)
                area = float(match[i]["area"])
            rows.append((image_id, boxes[i], scores[i], prepared.sizes[i], lgm_xy[i], lgm_s[i], det_xy[i],
                         det_s[i], gt[:, :2], np.nan_to_num(gt[:, 2]) > 0, area))
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 11
    return SourcePairs(*(np.asarray(c) for c in cols))


def match_by_iou(boxes: np.ndarray, anns: list[dict], min_iou: float) -> dict[int, dict]:
    """Detection index -> annotated person, greedy by box IoU."""
    pairs = sorted(((box_iou(b, annotation_box(a)), i, j) for i, b in enumerate(boxes) for j, a in enumerate(anns)),
                   reverse=True)
    out: dict[int, dict] = {}
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou >= min_iou and i not in out and j not in used:
            out[i] = anns[j]
            used.add(j)
    return out


def similarity(xy: np.ndarray, gt_xy: np.ndarray, area: np.ndarray, joint: int) -> np.ndarray:
    """COCO keypoint similarity of one joint over persons."""
    d2 = ((xy - gt_xy) ** 2).sum(-1)
    return np.exp(-d2 / (2 * np.maximum(area, 1.0) * (2 * COCO17.sigmas[joint]) ** 2))


def fit(pairs: SourcePairs, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per joint, the grid's (bias, gain) with the best mean similarity over the labelled joints of `rows`."""
    k = COCO17.num_joints
    bias, gain = np.zeros(k), np.zeros(k)
    for j in range(k):
        use = rows & pairs.gt_labelled[:, j]
        if use.sum() == 0:
            bias[j] = -BIAS_GRID.max()  # nothing to learn from: the detector's estimate
            continue
        lxy, dxy, gxy = pairs.lgm_xy[use, j], pairs.det_xy[use, j], pairs.gt_xy[use, j]
        diff = clip_scores(pairs.lgm_scores[use, j]) - clip_scores(pairs.det_scores[use, j])
        best = -1.0
        for g in GAIN_GRID:
            for b in BIAS_GRID:
                w = 1 / (1 + np.exp(-(b + g * diff)))
                score = similarity(w[:, None] * lxy + (1 - w[:, None]) * dxy, gxy, pairs.gt_area[use], j).mean()
                if score > best + 1e-9:
                    best, bias[j], gain[j] = score, b, g
    return bias, gain


def fused(pairs: SourcePairs, rows: np.ndarray, rule: Fusion) -> tuple[np.ndarray, np.ndarray]:
    return rule.fuse(pairs.lgm_xy[rows], pairs.lgm_scores[rows], pairs.det_xy[rows], pairs.det_scores[rows])


def cross_fit(pairs: SourcePairs, folds: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold fused keypoints and scores for every detection (folds by image)."""
    images = np.unique(pairs.image_ids)
    fold_of = dict(zip(np.random.default_rng(seed).permutation(images), np.arange(len(images)) % folds,
                       strict=True))
    fold = np.array([fold_of[i] for i in pairs.image_ids])
    xy, scores = np.zeros_like(pairs.lgm_xy), np.zeros_like(pairs.lgm_scores)
    for f in range(folds):
        held = fold == f
        bias, gain = fit(pairs, ~held)
        xy[held], scores[held] = fused(pairs, held, Fusion(tuple(bias), tuple(gain)))
    return xy, scores


def source_records(pairs: SourcePairs, xy: np.ndarray, scores: np.ndarray, topdown: TopDown) -> list[dict]:
    """COCO records of one source: the served scoring rule and OKS-NMS, image by image."""
    records = []
    for image_id in np.unique(pairs.image_ids):
        rows = pairs.image_ids == image_id
        poses = topdown.score(xy[rows], clip_scores(scores[rows]), pairs.boxes[rows], pairs.box_scores[rows],
                              pairs.crop_sizes[rows])
        records += to_records([int(image_id)] * len(poses), poses.keypoints, poses.joint_scores, poses.scores)
    return records


def concat(parts: list[SourcePairs], id_stride: int = 10**9) -> SourcePairs:
    """Several sets' pairs as one (image ids of set i offset by i x `id_stride`, so folds stay by image)."""
    fields = SourcePairs.__dataclass_fields__
    merged = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields if f != "image_ids"}
    ids = np.concatenate([p.image_ids + i * id_stride for i, p in enumerate(parts)])
    return SourcePairs(image_ids=ids, **merged)


def score_sources(sets: list[tuple[str, str | Path, SourcePairs]], topdown: TopDown, folds: int = 5,
                  bootstrap: int = 200, id_stride: int = 10**9) -> dict[str, dict]:
    """Per set, AP (95% bootstrap interval over images) of `lgm`, `detector` and out-of-fold `fused`; and the mean.

    `sets`: (name, annotation file, pairs). The rule is cross-fitted over the images of all sets together.
    """
    every = concat([p for _, _, p in sets], id_stride)
    oof_xy, oof_scores = cross_fit(every, folds)
    estimates = {"lgm": (every.lgm_xy, every.lgm_scores), "detector": (every.det_xy, every.det_scores),
                 "fused (out-of-fold)": (oof_xy, oof_scores)}
    out: dict[str, dict] = {name: {} for name in estimates}
    for i, (set_name, ann_file, _) in enumerate(sets):
        rows = every.image_ids // id_stride == i
        part = SourcePairs(**{f: getattr(every, f)[rows] for f in SourcePairs.__dataclass_fields__})
        part.image_ids = part.image_ids - i * id_stride
        coco = load_coco(ann_file)
        for name, (xy, s) in estimates.items():
            records = source_records(part, xy[rows], s[rows], topdown)
            stats = score_results(ann_file, records)["stats"]
            lo, hi = bootstrap_ap(coco, records, sorted(coco.getImgIds()), bootstrap) if bootstrap else (None, None)
            out[name][set_name] = {"AP": round(float(stats["AP"]), 4), "AP_interval": [lo, hi]}
    for name in out:
        out[name]["mean AP"] = round(float(np.mean([v["AP"] for v in out[name].values()])), 4)
    return out
