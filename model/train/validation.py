"""Validation during training: COCO AP with ground-truth boxes, or MPII PCKh@0.5, on one or more sets."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from torch import nn

from model.data.layout import mpii_files, resolve_split, split_data_arg
from model.eval.coco_engine import evaluate_coco
from model.eval.pckh import evaluate_mpii


def make_validator(val_args: list[str], device: str = "cpu", dataset: str = "coco") -> Callable[[nn.Module], dict]:
    """A function model -> {'AP': mean over the sets, '<set>_AP': each set's} ('DIR[:SPLIT]' args).

    MPII models are scored by mean PCKh@0.5 (in 0-1, under the same 'AP' key that picks best.pt).
    """
    sets = []
    for arg in val_args:
        data_dir, split = split_data_arg(arg, None)
        if dataset == "mpii":
            ann, images = mpii_files(Path(data_dir), split)
            sets.append((f"{Path(data_dir).name}_{ann.stem}", ann, images))
        else:
            files = resolve_split(data_dir, split, "val2017")
            sets.append((f"{Path(data_dir).name}_{files.split}", files.annotation, files.images))

    def validate(model: nn.Module) -> dict:
        out: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, ann, images in sets:
                if dataset == "mpii":
                    result = evaluate_mpii(model, ann, images, flip=False, device=device)
                    out[f"{name}_PCKh"] = round(float(result["table"]["Mean"]) / 100.0, 4)
                    continue
                result = evaluate_coco(model, ann, images, "gt", flip=False, device=device,
                                       results_path=Path(tmp) / f"{name}.json")
                out[f"{name}_AP"] = round(float(result["table"]["AP"]), 4)
        out["AP"] = round(sum(out.values()) / len(out), 4)  # best.pt: the mean over the validation sets
        return out

    return validate
