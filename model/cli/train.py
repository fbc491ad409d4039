"""`lgm-pose train`: one or more COCO-format (or MPII) training sets, mixed by sampling weights."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from model.data.layout import mpii_files, resolve_split, split_data_arg
from model.data.meta import pose_meta_of
from model.data.topdown_dataset import AugmentConfig, PersonSample, TopDownDataset, load_coco_samples, load_mpii_samples
from model.nn.checkpoint import checkpoint_pose_meta, load_matching_weights, read_checkpoint
from model.nn.network import CONFIGS, build_model
from model.train.trainer import TrainConfig, Trainer, seed_everything


def load_training_sets(data_dirs: list[str], split: str | None, aspect_wh: float,
                       dataset: str) -> list[list[PersonSample]]:
    """Samples per training set (teacher fill-ins and corrections come with cleaned sets: `lgm-pose clean`)."""
    sets = []
    for data_arg in data_dirs:
        data_dir, set_split = split_data_arg(data_arg, split)
        if dataset == "mpii":
            sets.append(load_mpii_samples(*mpii_files(Path(data_dir), set_split or "train"), aspect_wh))
            continue
        files = resolve_split(data_dir, set_split, "train2017")
        sets.append(load_coco_samples(files.annotation, files.images, aspect_wh, Path(data_dir).name))
    return sets


def per_sample_weights(sets: list[list[PersonSample]], set_weights: list[float] | None,
                       person_weights: list[float] | None = None, max_over_median: float = 3.0) -> list[float] | None:
    """Sampling weight of every person: its set's share of draws (`set_weights`) spread evenly over the set's
    persons, or a weight per person of each set (`person_weights`), then capped.

    Sampling is by person: no person is drawn more than `max_over_median` times as often as the median person,
    however small its set (a small set's share shrinks instead). Without weights every person is equal.
    """
    given = set_weights or person_weights
    if not given:
        return None
    if set_weights and person_weights:
        raise SystemExit("give --data-weights or --person-weights, not both")
    if len(given) != len(sets):
        raise SystemExit("--data-weights/--person-weights need one weight per --data directory")
    if set_weights:
        per_person = [w / sum(set_weights) / len(s) for s, w in zip(sets, set_weights, strict=True)]
    else:
        per_person = list(person_weights)
    weights = np.array([w for s, w in zip(sets, per_person, strict=True) for _ in s])
    if max_over_median > 0:
        weights = np.minimum(weights, max_over_median * np.median(weights))
    return (weights / weights.sum()).tolist()


def draws_per_person(sets: list[list[PersonSample]], weights: list[float] | None, crops: int) -> str:
    """Expected draws of each set's persons over `crops` crops (what the sampling does, printed at start)."""
    n = sum(len(s) for s in sets)
    w = np.asarray(weights) if weights is not None else np.full(n, 1.0 / n)
    parts, start = [], 0
    for group in sets:
        share = w[start:start + len(group)]
        parts.append(f"{group[0].source if group else '?'} {share.sum():.2f} of draws, {share.mean() * crops:.1f} "
                     "per person")
        start += len(group)
    return f"expected draws over {crops} crops (max/median {w.max() / np.median(w):.2f}): " + "; ".join(parts)


def run_train(args: argparse.Namespace) -> int:
    seed_everything(args.seed, args.deterministic)  # before the network is built: same initial weights
    start_from = args.resume or (args.init if not args.init_partial else None)
    if args.init_partial:  # another config (e.g. MPII from COCO weights): the tensors that fit
        model = build_model(args.config)
        fresh = load_matching_weights(model, read_checkpoint(args.init_partial)["state_dict"])
        print(f"weights from {args.init_partial} except {len(fresh)} tensors that differ in {args.config}: "
              + ", ".join(fresh))
    elif start_from:
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
    sets = load_training_sets(args.data, args.split, aspect, args.dataset)
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
                            foreground_weight=args.foreground_weight,
                            max_minutes=args.max_minutes, out=args.out,
                            extra_meta={"data": [str(d) for d in args.data], "data_weights": args.data_weights,
                                        "person_weights": args.person_weights, "draw_cap": args.draw_cap,
                                        "half_body_prob": args.half_body_prob,
                                        "augment": {"lowres": args.lowres_prob, "occlusion": args.occlusion_prob,
                                                    "photometric": args.photometric_prob},
                                        "init_from": args.init or args.init_partial})
    validate = None
    if args.val:
        from model.train.validation import make_validator
        validate = make_validator(args.val, args.device, meta.dataset.name, args.val_report)
    weights = per_sample_weights(sets, args.data_weights, args.person_weights, args.draw_cap)
    print(draws_per_person(sets, weights, args.epochs * (args.samples_per_epoch or len(samples))))
    trainer = Trainer(model, dataset, train_cfg, weights, validate)
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
    p.add_argument("--person-weights", type=float, nargs="+",
                   help="relative draws of each person, per data dir (capped at --draw-cap x the median person)")
    p.add_argument("--draw-cap", type=float, default=3.0,
                   help="no person drawn more than this x as often as the median person (0: no cap, for ablations)")
    p.add_argument("--val", nargs="+", help="validation dirs: AP (MPII: PCKh@0.5) each epoch, best.pt on their mean")
    p.add_argument("--val-report", nargs="+", help="sets scored each epoch beside --val, never used to choose")
    p.add_argument("--epochs", type=int, default=260)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--foreground-weight", type=float, default=0.0,
                   help="heatmap pixels weighted 1 + F x target (0: the paper's plain MSE)")
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
    p.add_argument("--init-partial", help="like --init for a network of --config: every tensor of this checkpoint "
                   "whose name and shape fit (the rest starts fresh)")
    p.add_argument("--resume", help="last.pt of an earlier run: continues exactly")
    p.add_argument("--out", default="runs/train")
    p.set_defaults(func=run_train)
