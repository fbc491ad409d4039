"""`lgm-pose train`: one or more COCO-format (or MPII) training sets, mixed by sampling weights."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from model.data.layout import mpii_files, resolve_split, split_data_arg
from model.data.meta import pose_meta_of
from model.data.teacher import read_labels
from model.data.topdown_dataset import AugmentConfig, PersonSample, TopDownDataset, load_coco_samples, load_mpii_samples
from model.nn.checkpoint import checkpoint_pose_meta, read_checkpoint
from model.nn.network import CONFIGS, build_model
from model.train.trainer import TrainConfig, Trainer, seed_everything


def load_training_sets(data_dirs: list[str], split: str | None, aspect_wh: float, dataset: str,
                       teachers: list[str] | None, teacher_weight: float) -> list[list[PersonSample]]:
    """Samples per training set; teacher files pair with data dirs by position ('-' for none)."""
    sets = []
    for i, data_arg in enumerate(data_dirs):
        data_dir, set_split = split_data_arg(data_arg, split)
        if dataset == "mpii":
            sets.append(load_mpii_samples(*mpii_files(Path(data_dir), set_split or "train"), aspect_wh))
            continue
        files = resolve_split(data_dir, set_split, "train2017")
        teacher_file = teachers[i] if teachers and i < len(teachers) and teachers[i] != "-" else None
        teacher = read_labels(teacher_file) if teacher_file else None
        sets.append(load_coco_samples(files.annotation, files.images, aspect_wh, Path(data_dir).name,
                                      teacher, teacher_weight))
    return sets


def per_sample_weights(sets: list[list[PersonSample]], set_weights: list[float] | None) -> list[float] | None:
    """Each set gets its share of draws (set weight), spread evenly over its samples."""
    if not set_weights:
        return None
    if len(set_weights) != len(sets):
        raise SystemExit("--data-weights needs one weight per --data directory")
    total = sum(set_weights)
    return [w / total / len(s) for s, w in zip(sets, set_weights, strict=True) for _ in s]


def run_train(args: argparse.Namespace) -> int:
    seed_everything(args.seed, args.deterministic)  # before the network is built: same initial weights
    start_from = args.resume or args.init
    if start_from:
        from model.nn.network import NetConfig
        payload = read_checkpoint(start_from)
        model = build_model(NetConfig.from_dict(payload["config"]))
        model.pose_meta = checkpoint_pose_meta(payload, model.cfg)  # its dataset metadata and codec carry over
        if args.init:  # fine-tuning: its weights, a fresh optimiser and schedule
            model.load_state_dict(payload["state_dict"], strict=True)
            print(f"weights from {args.init} ({payload.get('meta', {}).get('epoch', '?')} epochs)")
    else:
        model = build_model(args.config)
    cfg = model.cfg
    meta = pose_meta_of(model)
    aspect = meta.codec.input_wh[0] / meta.codec.input_wh[1]
    sets = load_training_sets(args.data, args.split, aspect, args.dataset, args.teacher, args.teacher_weight)
    samples = [s for group in sets for s in group]
    print(f"training {cfg.name} on {len(samples)} persons: "
          + ", ".join(f"{d}={len(s)}" for d, s in zip(args.data, sets, strict=True)))
    augment = AugmentConfig(half_body_prob=args.half_body_prob, lowres_prob=args.lowres_prob,
                            occlusion_prob=args.occlusion_prob, photometric_prob=args.photometric_prob)
    if args.no_augment:
        augment = AugmentConfig(scale=(1.0, 1.0), rotation_prob=0.0, flip_prob=0.0, half_body_prob=0.0)
    dataset = TopDownDataset(samples, meta.dataset, meta.codec, train=True, augment=augment, seed=args.seed)
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
                            workers=args.workers, seed=args.seed, deterministic=args.deterministic,
                            cpu_bf16=not args.no_bf16, samples_per_epoch=args.samples_per_epoch,
                            max_minutes=args.max_minutes, out=args.out,
                            extra_meta={"data": [str(d) for d in args.data], "data_weights": args.data_weights,
                                        "half_body_prob": args.half_body_prob,
                                        "augment": {"lowres": args.lowres_prob, "occlusion": args.occlusion_prob,
                                                    "photometric": args.photometric_prob},
                                        "teacher": args.teacher, "teacher_weight": args.teacher_weight,
                                        "init_from": args.init})
    validate = None
    if args.val:
        from model.train.validation import make_validator
        validate = make_validator(args.val, args.device, meta.dataset.name)
    trainer = Trainer(model, dataset, train_cfg, per_sample_weights(sets, args.data_weights), validate)
    if args.resume:
        trainer.resume(args.resume)
        print(f"resumed from {args.resume} at epoch {trainer.epoch}")
    t0 = time.perf_counter()
    trainer.fit()
    print(f"done: epoch {trainer.epoch}/{args.epochs} in {(time.perf_counter() - t0) / 60:.1f} min; "
          f"checkpoints in {args.out} (last.pt, best.pt), log.jsonl, curves.png")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train LGM-Pose (MSE heatmaps, Adam, step decay)")
    p.add_argument("--config", default="coco_256x192", choices=sorted(CONFIGS))
    p.add_argument("--data", nargs="+", required=True, help="dataset dirs (DIR/annotations, DIR/images); DIR:SPLIT")
    p.add_argument("--split", help="default train2017, or the single annotation file of a dir")
    p.add_argument("--dataset", choices=("coco", "mpii"), default="coco")
    p.add_argument("--data-weights", type=float, nargs="+", help="share of draws per data dir")
    p.add_argument("--teacher", nargs="+", help="teacher label file per data dir ('-' for none)")
    p.add_argument("--teacher-weight", type=float, default=0.5)
    p.add_argument("--val", nargs="+", help="validation dirs: AP (MPII: PCKh@0.5) each epoch, best.pt on their mean")
    p.add_argument("--epochs", type=int, default=260)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--half-body-prob", type=float, default=0.3, help="half-body crops (upper or lower body)")
    p.add_argument("--lowres-prob", type=float, default=0.0, help="small-person look: content at 15-50%% resolution")
    p.add_argument("--occlusion-prob", type=float, default=0.0, help="random patches pasted over the crop")
    p.add_argument("--photometric-prob", type=float, default=0.0, help="colour jitter, blur, JPEG artefacts")
    p.add_argument("--no-augment", action="store_true", help="no scale/rotation/flip/half-body (overfit checks)")
    p.add_argument("--no-bf16", action="store_true", help="CPU: fp32 even where the CPU has native bf16 "
                   "(bf16 autocast is used only there)")
    p.add_argument("--samples-per-epoch", type=int)
    p.add_argument("--max-minutes", type=float, help="stop after this wall time (checkpoint kept)")
    p.add_argument("--init", help="start from this checkpoint's weights with a fresh optimiser (fine-tuning)")
    p.add_argument("--resume", help="last.pt of an earlier run: continues exactly")
    p.add_argument("--out", default="runs/train")
    p.set_defaults(func=run_train)
