"""Image files of a dataset: a file name confined to its image folder, and the BGR image read from it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def image_path(image_dir: Path, file_name: str) -> Path:
    """`image_dir / file_name`, or a ValueError for names that leave the folder (absolute, '..', '~', '\\').

    A refused name is never looked at, so the error says nothing about whether such a file exists.
    """
    name = Path(file_name)
    if not file_name or name.is_absolute() or ".." in name.parts or file_name.startswith("~") or "\\" in file_name:
        raise ValueError("file name outside the image folder")
    return image_dir / name


def read_image(path: Path) -> np.ndarray:
    """BGR image or a ValueError saying why it cannot be used."""
    if not path.is_file():
        raise ValueError("file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError("unreadable image")
    return image
