"""MPII conventions: training and evaluation crop an MPII json entry the same way (real LSPET persons)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.unit


def _mpii_entries(data_root: Path, count: int) -> tuple[list[dict], Path]:
    """MPII-json entries of real LSPET persons, by the converter (`lgm-pose mpii-convert`)."""
    from model.data.mpii_convert import mpii_entry

    src = json.loads((data_root / "lspet" / "annotations" / "person_keypoints_train.json").read_text())
    names = {img["id"]: img["file_name"] for img in src["images"]}
    entries = [mpii_entry(ann, names[ann["image_id"]]) for ann in src["annotations"][:count]]
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
