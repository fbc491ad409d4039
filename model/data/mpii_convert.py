"""A COCO-format person set -> MPII json (HRNet/MMPose layout), with fixed held-out and validation splits.

Joints follow `model.data.joint_mapping`: the 12 limb joints as labelled, pelvis and thorax as the midpoints
of the hips and of the shoulders, upper_neck and head_top from LSP's `lsp_neck` / `lsp_head_top` where the
annotation carries them (shared LSPET does), else unlabelled. Boxes: the annotation's box, as a square of
side max(w, h): scale = side / 200 and the centre written 15 x scale px higher, so that MPII's crop convention
(`model.data.mpii`) crops exactly that square. Coordinates are 1-based, as in MPII's json.

Head size for PCKh is then head_top to upper_neck (the LSP joints), not MPII's 0.6 x head-box diagonal.
Splits are by image id: the last `holdout` images, the `val` images before them, and the rest for training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from model.data.datasets import MPII
from model.data.joint_mapping import coco_to_mpii
from model.data.layout import resolve_split

LSP_HEAD_JOINTS = {"upper_neck": "lsp_neck", "head_top": "lsp_head_top"}


def mpii_entry(ann: dict[str, Any], file_name: str) -> dict[str, Any] | None:
    """One COCO annotation as an MPII entry; None when it has no usable box or labelled joint."""
    kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    joints, labelled = coco_to_mpii(kpts[:, :2], (kpts[:, 2] > 0).astype(np.float64))
    for name, field in LSP_HEAD_JOINTS.items():
        if field in ann and ann[field][2] > 0:
            joints[MPII.index(name)], labelled[MPII.index(name)] = ann[field][:2], 1.0
    x, y, w, h = (float(v) for v in ann["bbox"])
    if ann.get("iscrowd", 0) or w < 2 or h < 2 or labelled.sum() == 0:
        return None
    origin, scale = MPII.coordinate_origin, max(w, h) / MPII.box_unit
    center = [x + w / 2 + origin, y + h / 2 + origin - MPII.center_shift * scale]
    joints = np.where(labelled[:, None] > 0, joints + origin, 0.0)
    return {"image": file_name, "center": [round(c, 3) for c in center], "scale": round(scale, 5),
            "joints": np.round(joints, 3).tolist(), "joints_vis": labelled.astype(int).tolist(),
            "source_annotation_id": ann["id"]}


def convert_to_mpii(data_dir: str | Path, split: str | None, out: str | Path, holdout: int = 700,
                    val: int = 300) -> dict[str, int]:
    """Write OUT/annot/{train,val,holdout}.json and OUT/images/<links to the source images>; persons per split.

    Images are linked one by one (never copied), so OUT/images is a real folder wherever OUT lives (an
    evaluation data root refuses an image folder that is a link out of it). Empty splits are not written.
    """
    files = resolve_split(data_dir, split, "train")
    data = json.loads(files.annotation.read_text())
    ids = sorted(img["id"] for img in data["images"])
    if holdout < 0 or val < 0 or holdout + val >= len(ids):
        raise ValueError(f"holdout + val must leave training images (the set has {len(ids)} images)")
    cut_val, cut_holdout = len(ids) - holdout - val, len(ids) - holdout
    split_of = {image_id: ("train" if i < cut_val else "val" if i < cut_holdout else "holdout")
                for i, image_id in enumerate(ids)}
    names = {img["id"]: img["file_name"] for img in data["images"]}
    entries: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "holdout": []}
    for ann in sorted(data["annotations"], key=lambda a: (a["image_id"], a["id"])):
        entry = mpii_entry(ann, names[ann["image_id"]])
        if entry is not None and ann["image_id"] in split_of:
            entries[split_of[ann["image_id"]]].append(entry)
    out = Path(out)
    (out / "annot").mkdir(parents=True, exist_ok=True)
    for name, split_entries in entries.items():
        if split_entries:
            (out / "annot" / f"{name}.json").write_text(json.dumps(split_entries))
    image_dir = out / "images"
    if image_dir.is_symlink():
        raise FileExistsError(f"{image_dir} is a link; convert into a fresh folder")
    image_dir.mkdir(exist_ok=True)
    for name in {e["image"] for split_entries in entries.values() for e in split_entries}:
        link = image_dir / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            os.symlink((files.images / name).resolve(), link)
    return {name: len(e) for name, e in entries.items()}
