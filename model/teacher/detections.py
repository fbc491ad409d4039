"""The teacher's (YOLO11n-pose's) detections on every image of a COCO-format set, stored once.

One detector pass per image at the service's settings (640 px, person confidence 0.25) writes every person it
finds: box (x1, y1, x2, y2), box score and 17 keypoints (x, y, confidence). Everything the training data takes
from the teacher is derived from this file without running the detector again (`model.data.cleaning`): the
detector's box for each annotated person (the crop inference makes), fill-ins for unlabelled joints, the
label-convention table and its corrections.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.data.layout import resolve_split, split_data_arg
from model.inference.yolo import default_yolo_weights, load_yolo


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def detect_set(data: str, out: str | Path, weights: str | None = None, imgsz: int = 640,
               conf: float = 0.25) -> dict[str, int]:
    """Run the teacher on every annotated image of `data` ('DIR' or 'DIR:SPLIT'); write OUT (JSON)."""
    data_dir, split = split_data_arg(data, None)
    files = resolve_split(data_dir, split, "train")
    coco = json.loads(files.annotation.read_text())
    annotated = {a["image_id"] for a in coco["annotations"]}
    images = [img for img in coco["images"] if img["id"] in annotated]
    yolo = load_yolo(weights)
    found: dict[str, list[list[float]]] = {}
    for img in tqdm(images, desc=f"teacher {Path(data_dir).name}:{files.split}", unit="img"):
        result = yolo.predict(str(files.images / img["file_name"]), imgsz=imgsz, conf=conf, classes=[0],
                              verbose=False)[0]
        rows = []
        if result.keypoints is not None and len(result.boxes):
            boxes = result.boxes.xyxy.cpu().numpy()
            scores = result.boxes.conf.cpu().numpy()
            kpts = np.concatenate([result.keypoints.xy.cpu().numpy(), result.keypoints.conf.cpu().numpy()[..., None]],
                                  -1)
            rows = [np.round(np.r_[b, s, k.reshape(-1)], 3).tolist() for b, s, k in zip(boxes, scores, kpts,
                                                                                         strict=True)]
        found[str(img["id"])] = rows
    weights_path = Path(weights) if weights else default_yolo_weights()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({
        "source": str(data_dir), "split": files.split, "imgsz": imgsz, "conf": conf,
        "weights": weights_path.name, "weights_sha256": file_sha256(weights_path), "detections": found}))
    return {"images": len(images), "persons": sum(len(v) for v in found.values())}

