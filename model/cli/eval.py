"""`lgm-pose eval`: COCO keypoint AP (pycocotools) or MPII PCKh of a checkpoint, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from model.data.layout import DEFAULT_COCO_SPLIT, DEFAULT_MPII_SPLITS, mpii_files, resolve_split, split_data_arg


def _files(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.ann:
        return Path(args.ann), Path(args.images or Path(args.ann).parent)
    if args.data is None:
        raise FileNotFoundError("give --data DIR (or --ann FILE --images DIR)")
    data, split = split_data_arg(args.data, args.split)  # DIR:SPLIT, as in `lgm-pose train`
    if args.dataset == "mpii":
        ann, images = mpii_files(Path(data), split)
    else:
        found = resolve_split(data, split, DEFAULT_COCO_SPLIT)
        ann, images = found.annotation, found.images
    return ann, Path(args.images) if args.images else images


def _progress_bar(total_hint: str):
    from tqdm import tqdm

    bar = tqdm(desc=total_hint, unit="person", file=sys.stderr, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
    return bar, update


def _run_model(args: argparse.Namespace, ann: Path, images: Path) -> dict[str, Any]:
    from model.eval.coco_engine import evaluate_coco
    from model.eval.pckh import evaluate_mpii
    from model.inference.runners import TorchRunner
    from model.nn.checkpoint import load_model

    if args.source:
        if args.dataset != "coco" or args.boxes != "gt":
            raise ValueError("--source scores the service's pose sources on its own detector's boxes (COCO only, "
                             "no --boxes)")
        from model.eval.compare import evaluate_source

        return evaluate_source(args.weights, ann, images, args.source, args.flip, bootstrap=args.bootstrap,
                               backend=args.backend, precision=args.precision)
    if args.backend == "torch":
        runner = TorchRunner(load_model(args.weights, args.config), args.device)
    else:
        from model.inference.loader import build_runner

        runner, _ = build_runner(Path(args.weights), args.config, args.backend, precision=args.precision)
    bar, update = _progress_bar(f"eval {args.dataset}")
    try:
        if args.dataset == "mpii":
            return evaluate_mpii(runner, ann, images, args.flip, args.batch_size, update, max_persons=args.max_images)
        boxes: str = args.boxes if args.boxes == "gt" else str(Path(args.boxes))
        results_path = Path(args.out).with_suffix(".keypoints.json")
        return evaluate_coco(runner, ann, images, boxes, args.flip, args.batch_size, update,
                             det_score_threshold=args.det_thr, max_images=args.max_images, results_path=results_path,
                             bootstrap=args.bootstrap)
    finally:
        bar.close()


def run_eval(args: argparse.Namespace) -> int:
    from model.eval.coco_engine import evaluate_results_file, save_json

    try:
        ann, images = _files(args)
        if args.results:
            result = evaluate_results_file(ann, args.results)
        else:
            if not args.weights:
                raise FileNotFoundError("give --weights CHECKPOINT (or --results FILE.json to score predictions)")
            result = _run_model(args, ann, images)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result.update(config=args.config, weights=args.weights, device=args.device, backend=args.backend,
                  precision=args.precision)
    print(result.get("summary") or "no table (cancelled)")
    if result.get("dataset") == "mpii" and result.get("table"):
        print(f"limb mean (12 limb joints) {result['limb_mean']:.2f}")
        if result["unscored_joints"]:
            print(f"a {result['model_joints']} model through the COCO-to-MPII mapping: "
                  f"{', '.join(result['unscored_joints'])} (and Head) not scored")
    if "AP_ci95" in result:
        lo, hi = result["AP_ci95"]
        print(f"AP {result['table']['AP']:.3f}, 95% interval {lo:.3f}-{hi:.3f} (bootstrap over images)")
    for item in result.get("skipped_images", []):
        print(f"skipped {item['image']}: {item['reason']}", file=sys.stderr)
    if "throughput" in result:
        tp = result["throughput"]
        print(f"{result['counts'].get('persons_predicted', 0)} persons in {tp['seconds']:.1f} s "
              f"({tp['persons_per_s']:.1f} persons/s)")
    out = save_json(args.out, result)
    print(f"wrote {out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="COCO keypoint AP or MPII PCKh of a checkpoint")
    p.add_argument("--config", help="network config (default: the checkpoint's)")
    p.add_argument("--weights", help="checkpoint to evaluate")
    p.add_argument("--data", help="dataset folder (DIR/annotations/person_keypoints_<split>.json, DIR/images/<split>)")
    p.add_argument("--split", help=f"split (default {DEFAULT_COCO_SPLIT}, or the only annotation file in DIR; "
                                   f"MPII: {'/'.join(DEFAULT_MPII_SPLITS)})")
    p.add_argument("--ann", help="annotation file (overrides --data/--split)")
    p.add_argument("--images", help="image folder (with --ann, or to override the layout's)")
    p.add_argument("--dataset", choices=("coco", "mpii"), default="coco")
    p.add_argument("--boxes", default="gt", help="'gt' or a COCO detection-results json (person boxes)")
    p.add_argument("--source", choices=("lgm", "detector", "fused"),
                   help="a pose source of the service, on its detector's boxes (default: LGM-Pose on --boxes)")
    p.add_argument("--det-thr", type=float, default=0.0, help="score threshold on detection boxes")
    p.add_argument("--results", help="score this COCO keypoint results json instead of running a model")
    p.add_argument("--flip", action="store_true", help="flip test (average with the mirrored crop)")
    p.add_argument("--bootstrap", type=int, default=500, help="COCO: resamples for AP's 95%% interval (0: none)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino", "auto"), default="torch",
                   help="the pose network's runtime (a checkpoint is exported to ONNX for the CPU runtimes)")
    p.add_argument("--precision", choices=("f32", "bf16", "int8", "auto"), default="f32",
                   help="CPU runtimes: a precision `lgm-pose check-precision` accepted for the model")
    p.add_argument("--max-images", type=int, help="evaluate the first N images (MPII: N persons) only")
    p.add_argument("--out", default="eval_result.json", help="JSON result file (keypoints go to OUT.keypoints.json)")
    p.set_defaults(func=run_eval)
