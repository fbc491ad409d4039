"""Teacher (YOLO11n-pose) labels for the persons nobody annotated.

Sources: a COCO-format set (its images often show more people than are annotated: LSPET, sports) or a
video (frames every `--every` frames, written as JPEGs). Every teacher person that is confident enough and
is not one of the annotated persons becomes an annotation: joints at or above `kpt_min` are labelled (v=2)
and carry the teacher's confidence as their training weight (`keypoint_weights`, read by
`model.data.load_coco_samples`); annotated persons keep their human labels. The output is a COCO-format set
(OUT/annotations/person_keypoints_<split>.json, OUT/images/<split>/) that `lgm-pose train` reads like any other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from model.data.geometry import box_iou
from model.data.layout import resolve_split, split_data_arg
from model.data.matching import Detections, read_detections
from model.inference.yolo import load_yolo


def is_annotated(box: np.ndarray, annotations: list[dict], min_iou: float = 0.3) -> bool:
    """Whether a teacher box is one of the annotated persons (box overlap, or most of its labelled joints inside)."""
    for ann in annotations:
        x, y, w, h = ann["bbox"]
        if box_iou(box, np.array([x, y, x + w, y + h])) >= min_iou:
            return True
        kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        pts = kpts[kpts[:, 2] > 0, :2]
        inside = (pts[:, 0] >= box[0]) & (pts[:, 0] <= box[2]) & (pts[:, 1] >= box[1]) & (pts[:, 1] <= box[3])
        if len(pts) and inside.mean() >= 0.5:
            return True
    return False


def detections_of(result) -> Detections:
    """An Ultralytics pose result as `Detections`."""
    if result.keypoints is None or len(result.boxes) == 0:
        return Detections.from_rows([])
    kpts = np.concatenate([result.keypoints.xy.cpu().numpy(), result.keypoints.conf.cpu().numpy()[..., None]], -1)
    return Detections(result.boxes.xyxy.cpu().numpy().astype(np.float64),
                      result.boxes.conf.cpu().numpy().astype(np.float64), kpts.astype(np.float64))


def teacher_annotations(found: Detections, image_id: int, first_id: int, known: list[dict], box_min: float,
                        kpt_min: float, min_joints: int) -> list[dict]:
    """COCO annotations of the confident teacher persons that are not among `known`."""
    out = []
    for box, score, kp in zip(found.boxes, found.scores, found.keypoints, strict=True):
        pts, c = kp[:, :2], kp[:, 2]
        keep = c >= kpt_min
        if score < box_min or keep.sum() < min_joints or is_annotated(box, known):
            continue
        kpts = np.c_[np.where(keep[:, None], pts, 0.0), np.where(keep, 2, 0)]
        x1, y1, x2, y2 = (float(v) for v in box)
        out.append({"id": first_id + len(out), "image_id": image_id, "category_id": 1, "iscrowd": 0,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                    "keypoints": [round(float(v), 2) for v in kpts.reshape(-1)], "num_keypoints": int(keep.sum()),
                    "keypoint_weights": [round(float(v), 3) if k else 0.0 for v, k in zip(c, keep, strict=True)],
                    "box_score": round(float(score), 3), "source": "teacher"})
    return out


def video_frames(video: Path, every: int, out_dir: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(file name, frame) of every `every`-th frame, written as JPEG into `out_dir`."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {video}")
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            if index % every == 0:
                name = f"{video.stem}_{index:06d}.jpg"
                cv2.imwrite(str(out_dir / name), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
                yield name, frame
            index += 1
    finally:
        cap.release()


def pseudo_label(out: str | Path, split: str, data: str | None = None, videos: list[str] | None = None,
                 every: int = 5, weights: str | None = None, imgsz: int = 640, box_min: float = 0.5,
                 kpt_min: float = 0.3, min_joints: int = 5, detections: str | None = None) -> dict[str, int]:
    """Teacher-labelled COCO-format set of the unannotated persons in `data` and/or the frames of `videos`.

    `detections`: the `lgm-pose teacher` file of `data`, read instead of running the teacher on its images again.
    """
    out = Path(out)
    image_dir = out / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    stored = read_detections(detections) if detections else None
    yolo = load_yolo(weights) if videos or stored is None else None
    images: list[dict] = []
    annotations: list[dict] = []

    def label(name: str, source: str | np.ndarray, width: int, height: int, known: list[dict],
              found: Detections | None = None) -> None:
        image_id = len(images) + 1
        if found is None:
            found = detections_of(yolo.predict(source, imgsz=imgsz, conf=box_min, classes=[0], verbose=False)[0])
        new = teacher_annotations(found, image_id, len(annotations) + 1, known, box_min, kpt_min, min_joints)
        if new:
            images.append({"id": image_id, "file_name": name, "width": width, "height": height})
            annotations.extend(new)

    if data:
        data_dir, data_split = split_data_arg(data, None)
        files = resolve_split(data_dir, data_split, "train")
        src = json.loads(files.annotation.read_text())
        by_image: dict[int, list[dict]] = {}
        for ann in src["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        for img in tqdm(src["images"], desc=f"teacher {Path(data_dir).name}", unit="img"):
            path = files.images / img["file_name"]
            before = len(images)
            label(img["file_name"], str(path), img["width"], img["height"], by_image.get(img["id"], []),
                  stored.get(img["id"], Detections.from_rows([])) if stored is not None else None)
            link = image_dir / img["file_name"]
            if len(images) > before and not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(path.resolve(), link)
    for video in videos or []:
        for name, frame in tqdm(video_frames(Path(video), every, image_dir), desc=f"teacher {Path(video).name}",
                                unit="frame"):
            label(name, frame, frame.shape[1], frame.shape[0], [])
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps({
        "info": {"description": "YOLO11n-pose pseudo-labels (teacher confidences in keypoint_weights)",
                 "source": data, "videos": videos},
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}))
    return {"images": len(images), "persons": len(annotations)}
