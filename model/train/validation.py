"""Validation during training: COCO AP with ground-truth boxes on one or more COCO-format sets."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from torch import nn

from model.data.layout import resolve_split, split_data_arg
from model.eval.coco_engine import evaluate_coco


def make_validator(val_args: list[str], device: str = "cpu") -> Callable[[nn.Module], dict]:
    """A function model -> {'AP': mean AP of the sets, '<set>_AP': each set's AP} ('DIR[:SPLIT]' args)."""
    sets = []
    for arg in val_args:
        data_dir, split = split_data_arg(arg, None)
        files = resolve_split(data_dir, split, "val2017")
        sets.append((f"{Path(data_dir).name}_{files.split}", files))

    def validate(model: nn.Module) -> dict:
        out: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, files in sets:
                result = evaluate_coco(model, files.annotation, files.images, "gt", flip=False, device=device,
                                       results_path=Path(tmp) / f"{name}.json")
                out[f"{name}_AP"] = round(float(result["table"]["AP"]), 4)
        out["AP"] = round(sum(out.values()) / len(out), 4)  # best.pt: the mean over the validation sets
        return out

    return validate
