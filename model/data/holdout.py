"""Split a COCO-format set into `train` and `holdout` by image, without copying images.

The last N images (by id) become the held-out split that no training sees; both splits get their own
annotation file and an image folder of symlinks into the source, so every tool reads them by the usual
DIR/annotations + DIR/images/<split> layout. Used for checkpoint selection (and the MPII held-out split).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from model.data.layout import resolve_split, split_data_arg


def write_split(data: dict, image_ids: set[int], source_images: Path, out: Path, split: str) -> int:
    """One split of `data`: the annotation file and a folder of symlinks; returns the person count."""
    images = [img for img in data["images"] if img["id"] in image_ids]
    anns = [a for a in data["annotations"] if a["image_id"] in image_ids]
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    image_dir = out / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    (out / "annotations" / f"person_keypoints_{split}.json").write_text(
        json.dumps({**data, "images": images, "annotations": anns}))
    for img in images:
        link = image_dir / img["file_name"]
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            os.symlink((source_images / img["file_name"]).resolve(), link)
    return len(anns)


def make_holdout(data_arg: str, last: int, out: str | Path) -> dict[str, int]:
    """Write OUT/{annotations,images} with splits `train` (all but the last `last` images) and `holdout`."""
    data_dir, split = split_data_arg(data_arg, None)
    files = resolve_split(data_dir, split, "train")
    data = json.loads(files.annotation.read_text())
    ids = sorted(img["id"] for img in data["images"])
    if not 0 < last < len(ids):
        raise ValueError(f"--last must be between 1 and {len(ids) - 1}")
    held = set(ids[-last:])
    out = Path(out)
    return {"train": write_split(data, set(ids) - held, files.images, out, "train"),
            "holdout": write_split(data, held, files.images, out, "holdout")}
