"""Dataset layout: DIR/annotations/person_keypoints_<split>.json and DIR/images/<split>/ (MPII: DIR/annot)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_COCO_SPLIT = "val2017"
DEFAULT_MPII_SPLITS = ("valid", "val")


@dataclass(frozen=True)
class SplitFiles:
    annotation: Path
    images: Path
    split: str


def resolve_split(data_dir: str | Path, split: str | None, default: str) -> SplitFiles:
    """Find the annotation file and image folder of a split.

    When `split` is None and DIR holds a single annotation file, that one is used whatever its split;
    otherwise `split` (or `default`) names it.
    """
    data_dir = Path(data_dir)
    ann_dir = data_dir / "annotations"
    if not ann_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} has no annotations/ folder")
    found = sorted(ann_dir.glob("person_keypoints_*.json"))
    if split is None and len(found) == 1:
        split = found[0].stem.removeprefix("person_keypoints_")
    split = split or default
    ann = ann_dir / f"person_keypoints_{split}.json"
    if not ann.is_file():
        names = ", ".join(p.stem.removeprefix("person_keypoints_") for p in found) or "none"
        raise FileNotFoundError(f"no split {split!r} in {ann_dir} (found: {names})")
    images = data_dir / "images" / split
    if not images.is_dir():
        raise FileNotFoundError(f"image folder {images} is missing")
    return SplitFiles(ann, images, split)


def split_data_arg(arg: str, split: str | None) -> tuple[str, str | None]:
    """'DIR:SPLIT' names a split of one directory; a plain 'DIR' keeps `split`."""
    head, sep, tail = arg.rpartition(":")
    if sep and head and "/" not in tail:
        return head, tail
    return arg, split


def mpii_files(data_dir: Path, split: str | None) -> tuple[Path, Path]:
    """MPII json and image folder: DIR/{annot,annotations}/{SPLIT,mpii_SPLIT}.json and DIR/images."""
    splits = (split,) if split else DEFAULT_MPII_SPLITS
    for name in splits:
        for folder in ("annot", "annotations"):
            for stem in (name, f"mpii_{name}"):
                ann = data_dir / folder / f"{stem}.json"
                if ann.is_file():
                    return ann, data_dir / "images"
    raise FileNotFoundError(f"no MPII json for split {'/'.join(splits)} under {data_dir}/annot or /annotations")
