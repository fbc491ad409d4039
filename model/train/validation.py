"""Validation during training: COCO AP with ground-truth boxes, or MPII PCKh@0.5, on one or more sets."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from torch import nn

from model.data.layout import mpii_files, resolve_split, split_data_arg
from model.eval.coco_engine import evaluate_coco
from model.eval.pckh import evaluate_mpii


def make_validator(val_args: list[str], device: str = "cpu", dataset: str = "coco",
                   report_args: list[str] | None = None) -> Callable[[nn.Module], dict]:
    """A function model -> {'AP': mean over the sets, '<set>_AP': each set's} ('DIR[:SPLIT]' args).

    MPII models are scored by mean PCKh@0.5 (in 0-1, under the same 'AP' key that picks best.pt).
    `report_args`: sets scored beside them ('reported_<set>_AP') that never enter the mean (nothing is chosen on
    them: original labels in another convention, say).
    """
    sets = []
    for arg in [*val_args, *(report_args or [])]:
        data_dir, split = split_data_arg(arg, None)
        if dataset == "mpii":
            ann, images = mpii_files(Path(data_dir), split)
            sets.append((f"{Path(data_dir).name}_{ann.stem}", ann, images))
        else:
            files = resolve_split(data_dir, split, "val2017")
            sets.append((f"{Path(data_dir).name}_{files.split}", files.annotation, files.images))

    def validate(model: nn.Module) -> dict:
        scores: list[tuple[str, float]] = []
        with tempfile.TemporaryDirectory() as tmp:
            for i, (name, ann, images) in enumerate(sets):
                if dataset == "mpii":
                    result = evaluate_mpii(model, ann, images, flip=False, device=device)
                    scores.append((f"{name}_PCKh", round(float(result["table"]["Mean"]) / 100.0, 4)))
                    continue
                result = evaluate_coco(model, ann, images, "gt", flip=False, device=device,
                                       results_path=Path(tmp) / f"{i}_{name}.json")
                scores.append((f"{name}_AP", round(float(result["table"]["AP"]), 4)))
        chosen = [v for _, v in scores[:len(val_args)]]
        out = dict(scores[:len(val_args)])
        out.update({f"reported_{k}": v for k, v in scores[len(val_args):]})
        out["AP"] = round(sum(chosen) / len(chosen), 4)  # best.pt: the mean over the validation sets
        return out

    return validate
