"""`lgm-pose clean`: training sets in COCO's conventions, with the per-set table (see model.data.cleaning)."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from model.data.clean_sets import clean_sets, format_tables

    reports = clean_sets(args.data, args.teacher or ["-"] * len(args.data), args.out, frozenset(args.steps))
    print(format_tables(reports))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("clean", help="detector boxes, fixed left/right swaps and joint offsets against the teacher")
    p.add_argument("--data", nargs="+", required=True, help="COCO-format sets, DIR or DIR:SPLIT")
    p.add_argument("--teacher", nargs="+", help="`lgm-pose teacher` file per set ('-': none, the corrections "
                   "fitted earlier for a set of the same name are applied, nothing else)")
    p.add_argument("--steps", nargs="+", choices=("boxes", "conventions", "fill"),
                   default=["boxes", "conventions", "fill"], help="what to apply (ablations leave one out)")
    p.add_argument("--out", required=True, help="OUT/<set>/ (splits kept) and OUT/conventions.json")
    p.set_defaults(func=_run)
