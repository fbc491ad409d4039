"""Teacher labels: YOLO11n-pose keypoints for the annotated persons of a COCO-format set.

Each annotated person is matched to the teacher detection whose keypoints agree best with the
labelled joints (OKS over labelled joints, at least `min_oks`); its 17 keypoints (x, y, confidence)
are stored by annotation id. `model.data.load_coco_samples` fills unlabelled joints from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.data.datasets import COCO
from model.data.layout import resolve_split
from model.inference.yolo import load_yolo


def oks_on_labelled(gt: np.ndarray, pred: np.ndarray, area: float) -> float:
    """OKS between labelled GT joints (v>0) and predicted joints."""
    vis = gt[:, 2] > 0
    if not vis.any():
        return 0.0
    d2 = ((gt[vis, :2] - pred[vis, :2]) ** 2).sum(1)
    var = (2 * COCO.sigma_array()[vis]) ** 2
    return float(np.mean(np.exp(-d2 / (2 * max(area, 1.0) * var))))


def label_set(data_dir: str | Path, split: str | None, out: str | Path, weights: str | None = None,
              imgsz: int = 640, min_oks: float = 0.5) -> dict:
    files_ = resolve_split(data_dir, split, "train")
    data = json.loads(files_.annotation.read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    yolo = load_yolo(weights)
    labels: dict[str, list] = {}
    images = [img for img in data["images"] if img["id"] in by_image]
    for img in tqdm(images, desc=f"teacher {Path(data_dir).name}", unit="img"):
        result = yolo.predict(str(files_.images / img["file_name"]), imgsz=imgsz, conf=0.25, verbose=False)[0]
        if result.keypoints is None or len(result.keypoints) == 0:
            continue
        det = np.concatenate([result.keypoints.xy.cpu().numpy(), result.keypoints.conf.cpu().numpy()[..., None]], -1)
        for ann in by_image[img["id"]]:
            gt = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            area = ann.get("area") or ann["bbox"][2] * ann["bbox"][3]
            scores = [oks_on_labelled(gt, d, area) for d in det]
            best = int(np.argmax(scores))
            if scores[best] >= min_oks:
                labels[str(ann["id"])] = np.round(det[best], 3).tolist()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"source": str(data_dir), "split": files_.split, "labels": labels}))
    return {"persons": len(data["annotations"]), "matched": len(labels)}


def read_labels(path: str | Path) -> dict[int, np.ndarray]:
    raw = json.loads(Path(path).read_text())["labels"]
    return {int(k): np.asarray(v, dtype=np.float64) for k, v in raw.items()}
