"""The offline check that accepts a reduced precision for one model file, runtime and precision.

A precision is accepted when its COCO keypoint AP on a validation set (fashion/val by default) is within
`AP_TOLERANCE` of the fp32 reference, ONNX Runtime f32 on the same file. The keypoint deltas against the reference
(median and p95, image pixels, on the set's real images) are reported beside it. The pose network is scored on the
ground-truth boxes; the detector on its own boxes and keypoints at the service's settings (confidence 0.25, 20
persons). The verdict is stored in the sidecar of `model.inference.precision`.
"""

from __future__ import annotations

import datetime
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from model.data.images import image_path, read_image
from model.eval.coco import load_coco, score_results
from model.eval.coco_engine import evaluate_coco
from model.inference.cpu_features import cpu_name, shown_flags
from model.inference.engines import int8_path, open_engine
from model.inference.onnx_detector import OnnxPersonDetector
from model.inference.precision import AP_TOLERANCE, model_hash
from model.inference.runners import OnnxRunner

DET_CONF, MAX_PERSONS = 0.25, 20  # the service's defaults


def _pose_records(onnx: Path, runtime: str, precision: str, ann: Path, images: Path) -> tuple[float, np.ndarray]:
    runner = OnnxRunner(onnx, engine=open_engine(onnx, runtime, precision, verified=False))
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate_coco(runner, ann, images, "gt", results_path=Path(tmp) / "kp.json")
        records = json.loads((Path(tmp) / "kp.json").read_text())
    xy = np.array([r["keypoints"] for r in records], dtype=np.float64).reshape(len(records), -1, 3)[..., :2]
    return float(result["table"]["AP"]), xy


def check_pose(onnx: Path, runtime: str, precision: str, ann: Path, images: Path) -> dict[str, Any]:
    """AP of fp32 and of the candidate on ground-truth boxes; per-joint distances between the two (px)."""
    ap_ref, xy_ref = _pose_records(onnx, "onnxruntime", "f32", ann, images)
    ap, xy = _pose_records(onnx, runtime, precision, ann, images)
    return {"ap_fp32": ap_ref, "ap": ap, "deltas": np.linalg.norm(xy - xy_ref, axis=-1).reshape(-1)}


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (n, 4) with every box of `b` (m, 4), x1y1x2y2."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], -1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


def _detections(detector: OnnxPersonDetector, ann: Path, images: Path) -> dict[int, tuple]:
    coco = load_coco(ann)
    out = {}
    for image_id in sorted(coco.getImgIds()):
        image = read_image(image_path(images, coco.imgs[image_id]["file_name"]))
        out[image_id] = detector.detect_with_keypoints(image, DET_CONF, MAX_PERSONS)
    return out


def _det_ap(ann: Path, dets: dict[int, tuple]) -> float:
    records = [{"image_id": i, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "keypoints": [round(float(v), 3) for v in k.reshape(-1)], "score": float(s)}
               for i, (boxes, scores, kpts) in dets.items() for b, s, k in zip(boxes, scores, kpts, strict=True)]
    return float(score_results(ann, records)["stats"]["AP"])


def check_detector(onnx: Path, runtime: str, precision: str, ann: Path, images: Path,
                   imgsz: int = 640) -> dict[str, Any]:
    """AP of YOLO's own keypoints in fp32 and in the candidate; keypoint distances of boxes matched at IoU 0.5."""
    ref = _detections(OnnxPersonDetector(onnx, imgsz), ann, images)
    engine = open_engine(onnx, runtime, precision, verified=False)
    cand = _detections(OnnxPersonDetector(onnx, imgsz, engine=engine), ann, images)
    deltas = []
    for image_id, (boxes, _, kpts) in cand.items():
        ref_boxes, _, ref_kpts = ref[image_id]
        if len(boxes) and len(ref_boxes):
            iou = _iou(boxes, ref_boxes)
            for i, j in enumerate(iou.argmax(1)):
                if iou[i, j] >= 0.5:
                    deltas.append(np.linalg.norm(kpts[i, :, :2] - ref_kpts[j, :, :2], axis=-1))
    return {"ap_fp32": _det_ap(ann, ref), "ap": _det_ap(ann, cand),
            "deltas": np.concatenate(deltas) if deltas else np.zeros(0)}


def check_precision(onnx: Path, runtime: str, precision: str, ann: Path, images: Path, data: str,
                    imgsz: int = 640) -> dict[str, Any]:
    """The verdict for `precision` in `runtime` on `onnx` (pose export or YOLO detector, told by its metadata)."""
    probe = open_engine(onnx, "onnxruntime", "f32")
    kind = "pose" if probe.metadata("lgm_pose_meta") else "detector"
    if kind == "pose":
        found = check_pose(onnx, runtime, precision, ann, images)
    else:
        found = check_detector(onnx, runtime, precision, ann, images, imgsz)
    model = int8_path(onnx) if precision == "int8" else onnx
    deltas = found["deltas"]
    ok = bool(abs(found["ap"] - found["ap_fp32"]) <= AP_TOLERANCE)
    return {"sha256": model_hash(model), "model": model.name, "kind": kind, "runtime": runtime,
            "precision": precision, "accepted": ok, "ap": round(found["ap"], 4),
            "ap_fp32": round(found["ap_fp32"], 4), "ap_tolerance": AP_TOLERANCE, "data": data,
            "kpt_delta_px": {"median": round(float(np.median(deltas)), 3) if deltas.size else None,
                             "p95": round(float(np.percentile(deltas, 95)), 3) if deltas.size else None,
                             "joints": int(deltas.size)},
            "reference": "onnxruntime/f32", "cpu": cpu_name(), "cpu_flags": shown_flags(),
            "checked_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
