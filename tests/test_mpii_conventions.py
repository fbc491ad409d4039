"""MPII conventions: training and evaluation crop an MPII json entry the same way (real LSPET persons)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.unit


def _mpii_entries(data_root: Path, count: int) -> tuple[list[dict], Path]:
    """MPII-json entries (1-based joints, center/scale) made from real LSPET persons and their LSP joints."""
    src = json.loads((data_root / "lspet" / "annotations" / "person_keypoints_train.json").read_text())
    from model.data.datasets import COCO, MPII

    entries = []
    for ann in src["annotations"][:count]:
        kp = np.array(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        joints, vis = np.zeros((16, 2)), np.zeros(16)
        for name in MPII.joint_names:
            if name in COCO.joint_names and kp[COCO.index(name), 2] > 0:
                joints[MPII.index(name)], vis[MPII.index(name)] = kp[COCO.index(name), :2], 1
        joints[MPII.index("upper_neck")], vis[MPII.index("upper_neck")] = ann["lsp_neck"][:2], 1
        joints[MPII.index("head_top")], vis[MPII.index("head_top")] = ann["lsp_head_top"][:2], 1
        x, y, w, h = ann["bbox"]
        entries.append({"image": f"im{ann['image_id']:05d}.jpg", "center": [x + w / 2 + 1, y + h / 2 + 1],
                        "scale": max(w, h) / 200.0, "joints": (joints + 1).tolist(), "joints_vis": vis.tolist()})
    return entries, data_root / "lspet" / "images" / "train"


def test_mpii_training_and_evaluation_crops_are_the_same(data_root: Path, tmp_path: Path) -> None:
    """The training dataset and the evaluation feed the network the same crop, and joints map back exactly."""
    import cv2

    from model.data.meta import PoseMeta
    from model.data.mpii import mpii_person
    from model.data.topdown_dataset import TopDownDataset, load_mpii_samples
    from model.inference.topdown import TopDown
    from model.nn.config import get_config

    entries, image_dir = _mpii_entries(data_root, 3)
    ann = tmp_path / "mpii.json"
    ann.write_text(json.dumps(entries))
    meta = PoseMeta.for_config(get_config("mpii_256x256"))
    samples = load_mpii_samples(ann, image_dir, 1.0)
    dataset = TopDownDataset(samples, meta.dataset, meta.codec, train=False)
    topdown = TopDown(meta, flip=False)
    for i, entry in enumerate(entries):
        person = mpii_person(entry, 1.0)
        image = cv2.imread(str(image_dir / entry["image"]))
        prepared = topdown.prepare_crops(image, person.center[None], person.size[None])
        item = dataset[i]
        np.testing.assert_array_equal(item["image"].numpy(), prepared.inputs[0])
        # the training target, decoded by the evaluation path, lands on the 0-based ground truth
        points, _ = topdown.keypoints(prepared, item["heatmaps"].numpy()[None], None)
        seen = item["target_weight"].numpy() > 0
        scale = person.size[1] / (meta.codec.heatmap_hw[0] - 1)
        assert np.abs(points[0][seen] - person.joints[seen]).max() < 0.1 * scale
