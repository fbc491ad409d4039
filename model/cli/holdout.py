"""`lgm-pose holdout`: a held-out split of a COCO-format set (see model.data.holdout)."""

from __future__ import annotations

import argparse

from model.data.holdout import make_holdout


def _run(args: argparse.Namespace) -> int:
    counts = make_holdout(args.data, args.last, args.out)
    print(f"{args.out}: train {counts['train']} persons, holdout {counts['holdout']} persons")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("holdout", help="split a COCO-format set into train/holdout (last N images held out)")
    p.add_argument("--data", required=True, help="DIR or DIR:SPLIT")
    p.add_argument("--last", type=int, default=700, help="images held out (the last by id)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_run)
