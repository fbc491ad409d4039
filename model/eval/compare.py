"""One comparison on a COCO-format set, scored by pycocotools (`lgm-pose compare`).

(a) LGM-Pose with ground-truth boxes; then one row per pose source of the service, all on the service's person
detector (ONNX Runtime, same settings) through the one top-down path (flip and scoring as served):
(b) `lgm`, LGM-Pose on the detector's boxes; (c) `detector`, YOLO11n-pose's own keypoints; (d) `fused`, the two
combined by the rule fitted for the model (`lgm-pose fit-fusion`, never on this set). AP with a 95% bootstrap
interval over images, and the seconds each source's networks took.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from model.data.layout import resolve_split, split_data_arg
from model.eval.bootstrap import bootstrap_ap
from model.eval.coco import load_coco, score_results
from model.eval.coco_engine import evaluate_coco
from model.eval.fusion_fit import SourcePairs, collect_pairs, source_records
from model.inference.fusion import Fusion
from model.inference.loader import build_detector, build_runner
from model.inference.runners import Runner
from model.inference.topdown import TopDown
from model.inference.yolo import default_yolo_weights

TABLE_KEYS = ("AP", "AP50", "AP75", "APM", "APL", "AR")
SOURCE_ROWS = {"lgm": "(b) source lgm: YOLO11n-pose boxes + LGM-Pose", "detector": "(c) source detector: "
               "YOLO11n-pose keypoints", "fused": "(d) source fused: both, by the model's fitted rule"}


def source_estimates(pairs: SourcePairs, fusion: Fusion | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Keypoints and joint scores of every detection by each pose source (`fused` only with a fitted rule)."""
    out = {"lgm": (pairs.lgm_xy, pairs.lgm_scores), "detector": (pairs.det_xy, pairs.det_scores)}
    if fusion is not None:
        out["fused"] = fusion.fuse(pairs.lgm_xy, pairs.lgm_scores, pairs.det_xy, pairs.det_scores)
    return out


def networks(weights: str, yolo_weights: str | Path | None, imgsz: int, backend: str = "torch",
             precision: str = "f32") -> tuple[Runner, object]:
    """The pose runner and the detector as evaluated: LGM-Pose in `backend` (torch: eager PyTorch, the training
    code's), the detector in the same CPU runtime (ONNX Runtime for torch); both at `precision` (CPU runtimes)."""
    if not Path(weights).is_file():
        raise FileNotFoundError(f"pose weights not found: {weights}")
    runner, _ = build_runner(Path(weights), backend=backend, precision=precision)
    det_backend = "onnxruntime" if backend == "torch" else backend
    detector = build_detector(Path(yolo_weights) if yolo_weights else default_yolo_weights(), "cpu", imgsz,
                              backend=det_backend, precision=precision)
    return runner, detector


def evaluate_source(weights: str, ann_file: Path, image_dir: Path, source: str, flip: bool = False,
                    det_conf: float = 0.25, imgsz: int = 640, max_persons: int = 20, bootstrap: int = 500,
                    backend: str = "torch", precision: str = "f32") -> dict:
    """One pose source of the service on a COCO-format set (the service's detector, scoring and NMS)."""
    runner, detector = networks(weights, None, imgsz, backend, precision)
    if source == "fused" and runner.fusion is None:
        raise ValueError(f"{weights} carries no fused rule: fit one with `lgm-pose fit-fusion --into`")
    topdown = TopDown(runner.meta, flip=flip)
    pairs = collect_pairs(ann_file, image_dir, runner, topdown, detector, det_conf, max_persons)
    xy, scores = source_estimates(pairs, runner.fusion)[source]
    records = source_records(pairs, xy, scores, topdown)
    stats = score_results(ann_file, records)["stats"]
    coco = load_coco(ann_file)
    result = {"source": source, "table": {k: float(stats[k]) for k in TABLE_KEYS}, "flip": flip,
              "summary": " ".join(f"{k} {float(stats[k]):.3f}" for k in TABLE_KEYS)}
    if bootstrap:
        result["AP_ci95"] = list(bootstrap_ap(coco, records, sorted(coco.getImgIds()), bootstrap))
    return result


def compare(weights: str, data: str, split: str | None = None, yolo_weights: str | None = None,
            imgsz: int = 640, det_conf: float = 0.25, flip: bool = False, max_persons: int = 20,
            bootstrap: int = 200, backend: str = "torch", precision: str = "f32") -> dict:
    """Every row on one set; defaults are the service's on CPU (detector 640 px, confidence 0.25, no flip)."""
    data_dir, split = split_data_arg(data, split)
    files = resolve_split(data_dir, split, "val2017")
    runner, detector = networks(weights, yolo_weights, imgsz, backend, precision)
    topdown = TopDown(runner.meta, flip=flip)
    pairs = collect_pairs(files.annotation, files.images, runner, topdown, detector, det_conf, max_persons)
    coco = load_coco(files.annotation)
    image_ids = sorted(coco.getImgIds())
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        a = evaluate_coco(runner, files.annotation, files.images, "gt", flip=flip, results_path=Path(tmp) / "a.json",
                          bootstrap=bootstrap)
    rows["(a) LGM-Pose, ground-truth boxes"] = {**a["table"], "AP_interval": a.get("AP_ci95")}
    for source, (xy, scores) in source_estimates(pairs, runner.fusion).items():
        records = source_records(pairs, xy, scores, topdown)
        stats = score_results(files.annotation, records)["stats"]
        interval = list(bootstrap_ap(coco, records, image_ids, bootstrap)) if bootstrap else None
        rows[SOURCE_ROWS[source]] = {**{k: float(stats[k]) for k in TABLE_KEYS}, "AP_interval": interval}
    return {"data": str(files.annotation), "weights": str(weights), "backend": runner.name,
            "precision": getattr(runner, "precision", "f32"), "flip": flip, "det_conf": det_conf,
            "imgsz": imgsz, "fusion": runner.fusion.fitted_on if runner.fusion else None,
            "persons_detected": int(len(pairs.image_ids)), "rows": rows}


def markdown_table(result: dict) -> str:
    lines = ["| method | " + " | ".join(TABLE_KEYS) + " | AP 95% interval |", "|---|" + "---|" * (len(TABLE_KEYS) + 1)]
    for name, table in result["rows"].items():
        lo_hi = table.get("AP_interval")
        interval = f"{lo_hi[0]:.3f}-{lo_hi[1]:.3f}" if lo_hi else "-"
        lines.append(f"| {name} | " + " | ".join(f"{table[k]:.3f}" for k in TABLE_KEYS) + f" | {interval} |")
    if "(d) source fused: both, by the model's fitted rule" not in result["rows"]:
        lines.append("(no fused row: the model carries no fitted rule; `lgm-pose fit-fusion --into` fits one)")
    return "\n".join(lines)
