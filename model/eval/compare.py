"""One comparison on a COCO-format set, scored by pycocotools (`lgm-pose compare`).

(a) LGM-Pose with ground-truth boxes; (b) the service pipeline: the service's person detector
(ONNX Runtime, same settings) and the one top-down path (`TopDown`, flip and scoring as served);
(c) YOLO11n-pose's own keypoints on the same images.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.data.images import read_image
from model.data.layout import resolve_split, split_data_arg
from model.eval.coco import detection_records, load_coco, score_results
from model.eval.coco_engine import evaluate_coco
from model.inference.loader import build_detector
from model.inference.yolo import default_yolo_weights, load_yolo
from model.nn.checkpoint import load_model

TABLE_KEYS = ("AP", "AP50", "AP75", "APM", "APL", "AR")


def service_detections(ann_file: Path, image_dir: Path, weights: str | None, imgsz: int, conf: float,
                       max_persons: int) -> list[dict]:
    """Person boxes of the service's detector on every image, as COCO detection results (for b)."""
    coco = load_coco(ann_file)
    detector = build_detector(Path(weights) if weights else default_yolo_weights(), "cpu", imgsz)  # as served
    detections = []
    for image_id in tqdm(coco.getImgIds(), desc="service detector", unit="img"):
        image = read_image(image_dir / coco.imgs[image_id]["file_name"])
        boxes, scores = detector.detect(image, conf, max_persons)
        detections += detection_records(image_id, boxes, scores)
    return detections


def yolo_predictions(ann_file: Path, image_dir: Path, weights: str | None, imgsz: int,
                     conf: float) -> tuple[list[dict], float]:
    """YOLO11n-pose's own keypoint results on every image (for c), and seconds."""
    coco = load_coco(ann_file)
    yolo = load_yolo(weights)
    keypoints = []
    t0 = time.perf_counter()
    for image_id in tqdm(coco.getImgIds(), desc="yolo11n-pose", unit="img"):
        path = image_dir / coco.imgs[image_id]["file_name"]
        result = yolo.predict(str(path), imgsz=imgsz, conf=conf, classes=[0], verbose=False)[0]
        scores = result.boxes.conf.cpu().numpy()
        kpts = result.keypoints.xy.cpu().numpy() if result.keypoints is not None else np.zeros((0, 17, 2))
        kconf = result.keypoints.conf.cpu().numpy() if result.keypoints is not None else np.zeros((0, 17))
        for score, xy, kc in zip(scores, kpts, kconf, strict=True):
            flat = np.c_[xy, kc].reshape(-1)
            keypoints.append({"image_id": image_id, "category_id": 1, "keypoints": [round(float(v), 3) for v in flat],
                              "score": float(score)})
    return keypoints, time.perf_counter() - t0


def compare(weights: str, data: str, split: str | None = None, yolo_weights: str | None = None,
            imgsz: int = 640, det_conf: float = 0.25, flip: bool = False, max_persons: int = 20) -> dict:
    """The three rows on one set; defaults are the service's on CPU (detector 640 px, confidence 0.25, no flip)."""
    data_dir, split = split_data_arg(data, split)
    files = resolve_split(data_dir, split, "val2017")
    model = load_model(weights)
    detections = service_detections(files.annotation, files.images, yolo_weights, imgsz, det_conf, max_persons)
    yolo_kpts, yolo_s = yolo_predictions(files.annotation, files.images, yolo_weights, imgsz, det_conf)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        a = evaluate_coco(model, files.annotation, files.images, "gt", flip=flip, results_path=Path(tmp) / "a.json")
        b = evaluate_coco(model, files.annotation, files.images, detections, flip=flip,
                          results_path=Path(tmp) / "b.json")
    c = score_results(files.annotation, yolo_kpts)
    rows["(a) LGM-Pose, ground-truth boxes"] = a["table"]
    rows["(b) the service pipeline: YOLO11n-pose boxes + LGM-Pose"] = b["table"]
    rows["(c) YOLO11n-pose keypoints"] = {k: float(c["stats"][k]) for k in TABLE_KEYS}
    return {"data": str(files.annotation), "weights": str(weights), "flip": flip, "det_conf": det_conf,
            "imgsz": imgsz, "yolo_seconds": round(yolo_s, 1), "rows": rows}


def markdown_table(result: dict) -> str:
    lines = ["| method | " + " | ".join(TABLE_KEYS) + " |", "|---|" + "---|" * len(TABLE_KEYS)]
    for name, table in result["rows"].items():
        lines.append(f"| {name} | " + " | ".join(f"{table[k]:.3f}" for k in TABLE_KEYS) + " |")
    return "\n".join(lines)
