"""`lgm-pose clean` over several sets: cleaned COCO-format copies (images linked), their conventions and one table.

Each set is written to OUT/<set name>/ with its split kept, so `lgm-pose train --data OUT/lspet_split:train` reads
it like any other; OUT/conventions.json keeps what was fitted per set (joint corrections, box transform and the
detector's box errors used as training jitter), and a set given without a teacher (a validation split) takes the
corrections of the set of the same name from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.data.cleaning import STEPS, SetReport, clean_set
from model.data.datasets import COCO
from model.data.holdout import write_split
from model.data.layout import resolve_split, split_data_arg
from model.data.matching import read_detections


def clean_sets(data_args: list[str], teachers: list[str], out: str | Path,
               steps: frozenset[str] = STEPS) -> list[SetReport]:
    """Clean each 'DIR[:SPLIT]' with its teacher file ('-': none; corrections then come from OUT/conventions.json)."""
    if len(teachers) != len(data_args):
        raise ValueError("give one --teacher per --data ('-' for none)")
    out = Path(out)
    conventions_path = out / "conventions.json"
    conventions = json.loads(conventions_path.read_text()) if conventions_path.is_file() else {}
    reports = []
    for data_arg, teacher_file in zip(data_args, teachers, strict=True):
        data_dir, split = split_data_arg(data_arg, None)
        files = resolve_split(data_dir, split, "train")
        name = Path(data_dir).name
        coco = json.loads(files.annotation.read_text())
        detections = read_detections(teacher_file) if teacher_file != "-" else None
        correction = None
        if detections is None:
            if name not in conventions:
                raise ValueError(f"no teacher for {data_arg} and no corrections for {name!r} in {conventions_path}")
            correction = np.array([[np.nan if v is None else v for v in row]
                                   for row in conventions[name]["correction"]], dtype=np.float64)
        cleaned, report = clean_set(f"{name}:{files.split}", coco, detections, correction, steps=steps)
        info = {**coco.get("info", {}), "cleaned_from": str(files.annotation)}
        if detections is not None and "boxes" in steps:
            info["box_jitter"] = report.box_transform["std"]
            conventions[name] = {"correction": np.where(np.isfinite(report.correction), report.correction,
                                                        None).tolist(),
                                 "box_transform": report.box_transform, "split": files.split}
        write_split({**coco, "info": info, "annotations": cleaned}, {img["id"] for img in coco["images"]},
                    files.images, out / name, files.split)
        reports.append(report)
    out.mkdir(parents=True, exist_ok=True)
    conventions_path.write_text(json.dumps(conventions, indent=1))
    return reports


def _f(v: float, digits: int = 3) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def format_tables(reports: list[SetReport]) -> str:
    """Markdown: one summary row per set, then the per-joint offsets (up/out, torso lengths) before -> after."""
    lines = ["| set | persons | detector box (teacher agrees) | crop scale (shoulder-ankle / crop h) "
             "| box / joint extent | whole-body swaps "
             "| pair swaps (of measured) | contradicted joints | filled joints | detector box error (dx, dy, log w, "
             "log h: std) |", "|" + "---|" * 10]
    for r in reports:
        swaps = ", ".join(f"{COCO.joint_names[a].split('_')[1]} {r.pair_swaps[(a, b)]}/{r.pairs_measured[(a, b)]}"
                          for a, b in COCO.flip_pairs if r.pairs_measured[(a, b)])
        jitter = ", ".join(f"{v:.3f}" for v in (r.box_transform or {}).get("std", [])) if r.matched else "-"
        lines.append(f"| {r.name} | {r.persons} | {r.matched} ({r.agreeing}) | "
                     f"{_f(r.crop_scale[0])} -> {_f(r.crop_scale[1])} | "
                     f"{_f(r.box_extent[0], 2)} -> {_f(r.box_extent[1], 2)} | {r.whole_swaps} | {swaps or '-'} | "
                     f"{r.contradicted} | {r.filled} | {jitter} |")
    reports = [r for r in reports if r.agreeing]  # sets without a teacher have no offsets to show
    if not reports:
        return "\n".join(lines)
    lines += ["", "Joint offsets against the teacher, median in torso lengths (up: label higher on the body; out: "
              "wider), before -> after cleaning:", "",
              "| joint | " + " | ".join(f"{r.name} up | {r.name} out" for r in reports) + " |",
              "|---|" + "---|---|" * len(reports)]
    for j, joint in enumerate(COCO.joint_names):
        cells = []
        for r in reports:
            for k in range(2):
                before = r.offsets_before[j, k] if r.offsets_before is not None else np.nan
                after = r.offsets_after[j, k] if r.offsets_after is not None else np.nan
                cells.append(f"{_f(before, 2)} -> {_f(after, 2)}" if np.isfinite(before) else "-")
        lines.append(f"| {joint} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
