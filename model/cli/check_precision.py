"""`lgm-pose check-precision`: accept or refuse a reduced precision for one model file, stored beside it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.data.layout import resolve_split, split_data_arg

DEFAULT_DATA = str(Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fashion") + ":val"


def _run(args: argparse.Namespace) -> int:
    from model.eval.precision_check import check_precision
    from model.inference.precision import sidecar_path, store_verdict

    onnx = Path(args.model)
    if args.quantize:
        from model.inference.quantize_ov import quantize_openvino

        print(f"wrote {quantize_openvino(onnx, args.data, args.calibration)}")
    folder, split = split_data_arg(args.data, None)
    files = resolve_split(folder, split, "val")
    verdict = check_precision(onnx, args.runtime, args.precision, files.annotation, files.images,
                              f"{Path(folder).name}:{files.annotation.stem.removeprefix('person_keypoints_')}",
                              args.imgsz)
    model = onnx if args.precision != "int8" else Path(onnx.parent / verdict["model"])
    store_verdict(model, verdict)
    print(json.dumps(verdict, indent=1))
    print(f"{'ACCEPTED' if verdict['accepted'] else 'REFUSED'}: {args.runtime}/{args.precision} for {verdict['model']}"
          f" (AP {verdict['ap']:.4f} vs fp32 {verdict['ap_fp32']:.4f}); verdict in {sidecar_path(model)}",
          file=sys.stderr)
    return 0 if verdict["accepted"] else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-precision", help="score a reduced precision (bf16, int8) of an ONNX model against fp32 "
                       "and store the verdict beside it; the service runs only accepted precisions")
    p.add_argument("--model", required=True, help="an ONNX export: LGM-Pose (lgm-pose export) or the YOLO detector")
    p.add_argument("--runtime", choices=("openvino",), default="openvino")
    p.add_argument("--precision", choices=("bf16", "int8"), required=True)
    p.add_argument("--data", default=DEFAULT_DATA, help="COCO-format validation set DIR:SPLIT (default fashion:val)")
    p.add_argument("--imgsz", type=int, default=640, help="the detector's input size")
    p.add_argument("--quantize", action="store_true", help="int8: first quantise the model for OpenVINO with NNCF "
                   "(calibrated on the set's training split) into <model>.int8.xml")
    p.add_argument("--calibration", type=int, default=300, help="--quantize: calibration samples")
    p.set_defaults(func=_run)
