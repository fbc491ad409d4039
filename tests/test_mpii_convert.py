"""`lgm-pose mpii-convert` on the real shared LSPET set, and the COCO-to-MPII mapping that scores COCO models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.data.datasets import COCO, MPII
from model.data.geometry import box_to_center_size
from model.data.joint_mapping import coco_to_mpii, scored_joints
from model.data.mpii import mpii_person
from model.eval.pckh import pckh

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable  # the interpreter running the tests, whatever install it is


@pytest.fixture(scope="module")
def converted(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lspet_mpii")
    proc = subprocess.run([PYTHON, "-m", "app.cli", "mpii-convert", "--data", str(data_root / "lspet"),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "train 6000 persons, val 300 persons, holdout 700 persons" in proc.stdout, proc.stdout
    return out


@pytest.fixture(scope="module")
def source(data_root: Path) -> dict[int, dict]:
    data = json.loads((data_root / "lspet" / "annotations" / "person_keypoints_train.json").read_text())
    return {a["id"]: a for a in data["annotations"]}


def _split(converted: Path, name: str) -> list[dict]:
    return json.loads((converted / "annot" / f"{name}.json").read_text())


def test_splits_are_fixed_and_disjoint(converted: Path, data_root: Path) -> None:
    images = {name: {e["image"] for e in _split(converted, name)} for name in ("train", "val", "holdout")}
    assert images["holdout"] == {f"im{i:05d}.jpg" for i in range(6301, 7001)}  # the last 700 images by id
    assert images["val"] == {f"im{i:05d}.jpg" for i in range(6001, 6301)}
    assert not images["train"] & (images["val"] | images["holdout"]) and len(images["train"]) == 6000
    for name in ("im00001.jpg", "im07000.jpg"):  # linked, not copied
        link = converted / "images" / name
        assert link.is_symlink() and link.resolve() == (data_root / "lspet" / "images" / "train" / name).resolve()


def test_joints_and_crop_follow_the_documented_mapping(converted: Path, source: dict[int, dict]) -> None:
    entries = _split(converted, "train")[:200] + _split(converted, "holdout")[:200]
    derived = 0
    for entry in entries:
        ann = source[entry["source_annotation_id"]]
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        person = mpii_person(entry, 1.0)  # back to 0-based by the MPII convention training and eval use
        for name in MPII.joint_names:
            i = MPII.index(name)
            if name in COCO.joint_names:
                expect, labelled = kp[COCO.index(name), :2], kp[COCO.index(name), 2] > 0
            elif name in ("pelvis", "thorax"):
                a, b = ("left_hip", "right_hip") if name == "pelvis" else ("left_shoulder", "right_shoulder")
                pa, pb = kp[COCO.index(a)], kp[COCO.index(b)]
                expect, labelled = (pa[:2] + pb[:2]) / 2, pa[2] > 0 and pb[2] > 0
                derived += int(labelled)
            else:
                field = ann["lsp_neck" if name == "upper_neck" else "lsp_head_top"]
                expect, labelled = np.asarray(field[:2]), field[2] > 0
            assert person.visible[i] == labelled, (name, entry)
            if labelled:
                np.testing.assert_allclose(person.joints[i], expect, atol=1e-3)
        center, size = box_to_center_size(ann["bbox"], 1.0)  # the COCO crop of the same box
        np.testing.assert_allclose(person.center, center, atol=2e-3)
        np.testing.assert_allclose(person.size, size, rtol=1e-4)
    assert derived > 300  # pelvis and thorax are labelled for most persons


def test_coco_labels_through_the_mapping_score_the_limbs(converted: Path, source: dict[int, dict]) -> None:
    """COCO keypoints mapped to MPII joints are scored on the 12 limb joints (and pelvis, thorax), not the head."""
    entries = _split(converted, "holdout")
    persons = [mpii_person(e, 1.0) for e in entries]
    gt = np.stack([p.joints for p in persons])
    visible = np.stack([p.visible for p in persons])
    kp = np.stack([np.asarray(source[e["source_annotation_id"]]["keypoints"]).reshape(17, 3) for e in entries])
    pred, _ = coco_to_mpii(kp[..., :2], np.ones(kp.shape[:2]))
    scored = scored_joints("coco")
    assert set(MPII.joint_names) - set(scored) == {"upper_neck", "head_top"}
    exact = pckh(pred, gt, visible, scored=scored)
    assert exact["table"]["Head"] is None and exact["per_joint"]["head_top"] is None
    assert exact["table"]["Mean"] == exact["limb_mean"] == 100.0
    assert exact["counts"]["upper_neck"] == 0 and exact["counts"]["left_wrist"] > 400
    assert 0 < exact["persons_without_head_size"] < 200  # persons without both LSP head joints are left out
    heads = np.linalg.norm(gt[:, MPII.index("head_top")] - gt[:, MPII.index("upper_neck")], axis=1)
    shifted = pckh(pred + np.c_[0.6 * heads, np.zeros(len(heads))][:, None], gt, visible, scored=scored)
    assert shifted["table"]["Mean"] == 0.0  # 0.6 head sizes off: every scored joint is wrong
    full = pckh(pred, gt, visible)  # as if an MPII model predicted these: the head joints count, and miss
    assert full["table"]["Head"] is not None and full["table"]["Mean"] < 100.0
