"""Top-down person samples from COCO-format and MPII-format annotations, with training augmentation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from model.data import geometry
from model.data.codec import HeatmapCodec
from model.data.datasets import DatasetInfo
from model.data.mpii import load_mpii, mpii_person


@dataclass
class PersonSample:
    """One annotated person: image, box (center + padded size) and keypoints (K, 3) = x, y, weight."""

    image_path: str
    center: np.ndarray
    size: np.ndarray
    keypoints: np.ndarray
    source: str = ""
    ann_id: int = -1
    extra: dict = field(default_factory=dict)
    box_jitter: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)  # spread of the detector's box: dx, dy, log w, log h


def load_coco_samples(ann_file: str | Path, image_dir: str | Path, aspect_wh: float,
                      source: str = "") -> list[PersonSample]:
    """Non-crowd persons with at least one weighted keypoint, cropped around their `bbox`.

    Per-joint `keypoint_weights` (teacher pseudo-labels, cleaned sets) scale the labelled joints' weights; a
    cleaned set's `info.box_jitter` (the detector's box errors: dx, dy, log w, log h spreads) travels with each
    sample as its training-time box jitter.
    """
    data = json.loads(Path(ann_file).read_text())
    images = {img["id"]: img for img in data["images"]}
    jitter = tuple(float(v) for v in (data.get("info") or {}).get("box_jitter", (0.0, 0.0, 0.0, 0.0)))
    samples = []
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 1) == 0:
            continue
        kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        weights = (kpts[:, 2] > 0).astype(np.float64)
        if "keypoint_weights" in ann:
            weights = weights * np.asarray(ann["keypoint_weights"], dtype=np.float64)
        if weights.sum() == 0:
            continue
        x, y, w, h = ann["bbox"]
        if w < 2 or h < 2:
            continue
        center, size = geometry.box_to_center_size([x, y, w, h], aspect_wh)
        samples.append(PersonSample(str(Path(image_dir) / images[ann["image_id"]]["file_name"]), center, size,
                                    np.c_[kpts[:, :2], weights], source, ann["id"], box_jitter=jitter))
    return samples


def load_mpii_samples(ann_file: str | Path, image_dir: str | Path, aspect_wh: float) -> list[PersonSample]:
    """The HRNet/MMPose MPII json, cropped by the same convention as MPII evaluation (`model.data.mpii`)."""
    samples = []
    for i, entry in enumerate(load_mpii(ann_file)):
        person = mpii_person(entry, aspect_wh)
        samples.append(PersonSample(str(Path(image_dir) / entry["image"]), person.center, person.size,
                                    np.c_[person.joints, person.visible > 0], "mpii", i))
    return samples


@dataclass
class AugmentConfig:
    scale: tuple[float, float] = (0.65, 1.35)
    rotation: float = 45.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    lowres_prob: float = 0.0  # small persons: the crop's content seen at 15-50 % resolution, then upsampled
    occlusion_prob: float = 0.0  # 1-3 random patches (noise or flat colour) pasted over the crop
    photometric_prob: float = 0.0  # colour/brightness/contrast jitter, blur, JPEG artefacts


def coco_like(crop: np.ndarray, aug: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Make a clean, large person crop look like COCO's: small, occluded, blurred, compressed (BGR uint8)."""
    h, w = crop.shape[:2]
    if rng.random() < aug.lowres_prob:
        f = rng.uniform(0.15, 0.5)
        small = cv2.resize(crop, (max(4, round(w * f)), max(4, round(h * f))), interpolation=cv2.INTER_AREA)
        crop = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < aug.occlusion_prob:
        crop = crop.copy()
        for _ in range(int(rng.integers(1, 4))):
            pw, ph = int(rng.uniform(0.1, 0.4) * w), int(rng.uniform(0.1, 0.4) * h)
            x, y = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
            patch = rng.integers(0, 256, (ph, pw, 3)) if rng.random() < 0.5 else rng.integers(0, 256, 3)
            crop[y:y + ph, x:x + pw] = patch
    if rng.random() < aug.photometric_prob:
        alpha, beta = rng.uniform(0.6, 1.4), rng.uniform(-40, 40)
        crop = cv2.convertScaleAbs(crop, alpha=alpha, beta=beta)
        hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
        hsv[..., 1] = np.clip(hsv[..., 1].astype(np.float32) * rng.uniform(0.5, 1.5), 0, 255).astype(np.uint8)
        crop = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        if rng.random() < 0.5:
            k = int(rng.choice([3, 5]))
            crop = cv2.GaussianBlur(crop, (k, k), 0)
        if rng.random() < 0.5:
            ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 70))])
            crop = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else crop
    return crop


class TopDownDataset(Dataset):
    """Crops persons to the network input and builds heatmap targets; deterministic per (seed, epoch, index)."""

    def __init__(self, samples: list[PersonSample], dataset: DatasetInfo, codec: HeatmapCodec, train: bool,
                 augment: AugmentConfig | None = None, seed: int = 0) -> None:
        self.samples = samples
        self.dataset, self.codec = dataset, codec
        self.input_wh, self.heatmap_wh = codec.input_wh, codec.heatmap_wh
        self._flip_perm = dataset.flip_permutation()
        self.train = train
        self.aug = augment or AugmentConfig()
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def _image(self, path: str) -> np.ndarray:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read image {path}")
        return image

    def _half_body(self, kpts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
        visible = kpts[:, 2] > 0
        if visible.sum() < self.aug.half_body_min_joints or rng.random() >= self.aug.half_body_prob:
            return None
        upper = np.zeros(len(kpts), bool)
        upper[list(self.dataset.upper_body)] = True
        part = visible & (upper if rng.random() < 0.5 else ~upper)
        if part.sum() < 2:
            part = visible & ~part if (visible & ~part).sum() >= 2 else visible
        pts = kpts[part, :2]
        lo, hi = pts.min(0), pts.max(0)
        aspect = self.input_wh[0] / self.input_wh[1]
        center, size = geometry.box_to_center_size([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], aspect, 1.5)
        return center, size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        image = self._image(sample.image_path)
        kpts = sample.keypoints.copy()
        center, size, rot, flip = sample.center.copy(), sample.size.copy(), 0.0, False
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            half = self._half_body(kpts, rng)
            if half is not None:
                center, size = half
            else:  # the box as the detector might have drawn it
                dx, dy, _, log_h = sample.box_jitter
                center = center + rng.normal(0.0, 1.0, 2) * np.array([dx, dy]) * size / geometry.PADDING
                size = size * np.exp(rng.normal(0.0, log_h))
            size = size * rng.uniform(*self.aug.scale)
            if rng.random() < self.aug.rotation_prob:
                rot = float(rng.uniform(-self.aug.rotation, self.aug.rotation))
            flip = rng.random() < self.aug.flip_prob
        crop = geometry.crop(image, geometry.warp_matrix(center, size, self.input_wh, rot), self.input_wh)
        hm_pts = geometry.apply(geometry.warp_matrix(center, size, self.heatmap_wh, rot), kpts[:, :2])
        weights = kpts[:, 2].copy()
        if self.train:
            crop = coco_like(crop, self.aug, rng)
        if flip:
            crop = crop[:, ::-1]
            hm_pts[:, 0] = self.heatmap_wh[0] - 1 - hm_pts[:, 0]
            hm_pts, weights = hm_pts[self._flip_perm], weights[self._flip_perm]
        heatmaps, target_weight = self.codec.encode(hm_pts, weights)
        return {
            "image": torch.from_numpy(geometry.to_input(np.ascontiguousarray(crop))),
            "heatmaps": torch.from_numpy(heatmaps),
            "target_weight": torch.from_numpy(target_weight),
            "index": torch.tensor(index),
        }
