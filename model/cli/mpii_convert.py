"""`lgm-pose mpii-convert`: a COCO-format set (LSPET with its LSP head joints) -> MPII json splits."""

from __future__ import annotations

import argparse

from model.data.layout import split_data_arg
from model.data.mpii_convert import convert_to_mpii


def _run(args: argparse.Namespace) -> int:
    data_dir, split = split_data_arg(args.data, None)
    counts = convert_to_mpii(data_dir, split, args.out, args.holdout, args.val)
    print(f"{args.out}/annot: " + ", ".join(f"{name} {n} persons" for name, n in counts.items() if n)
          + f"; images: {args.out}/images")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mpii-convert", help="COCO-format set -> MPII json (16 joints), last N images held out")
    p.add_argument("--data", required=True, help="DIR or DIR:SPLIT (e.g. ../shared/data/lspet)")
    p.add_argument("--holdout", type=int, default=700, help="the last N images (by id): held out, never trained on")
    p.add_argument("--val", type=int, default=300, help="the N images before them: validation (checkpoint choice)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_run)
