"""The shipped weights' fused source, with the real models on fashion/val in COCO's conventions (out-of-fold)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights" / "lgm_pose_coco_256x192.pt"


@pytest.fixture(scope="module")
def corrected_fashion_val(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fashion/val with fashion/train's offsets against the teacher (weights/training/conventions.json)."""
    from model.data.clean_sets import clean_sets

    out = tmp_path_factory.mktemp("clean")
    shutil.copy(REPO / "weights" / "training" / "conventions.json", out / "conventions.json")
    clean_sets([f"{data_root / 'fashion'}:val"], ["-"], out)
    return out / "fashion"


def test_fused_is_at_least_the_detector_out_of_fold(corrected_fashion_val: Path) -> None:
    from model.eval.fusion_fit import collect_pairs, score_sources
    from model.inference.loader import build_detector
    from model.inference.runners import TorchRunner
    from model.inference.topdown import TopDown
    from model.inference.yolo import default_yolo_weights
    from model.nn.checkpoint import load_model

    runner = TorchRunner(load_model(WEIGHTS))
    topdown = TopDown(runner.meta, flip=False)  # the CPU default
    detector = build_detector(default_yolo_weights(), "cpu", 640)
    ann = corrected_fashion_val / "annotations" / "person_keypoints_val.json"
    pairs = collect_pairs(ann, corrected_fashion_val / "images" / "val", runner, topdown, detector)
    report = score_sources([("fashion:val", ann, pairs)], topdown, folds=5, bootstrap=0)
    print({k: v["mean AP"] for k, v in report.items()})  # measured: lgm 0.681, detector 0.792, fused 0.804
    assert report["fused (out-of-fold)"]["mean AP"] >= report["detector"]["mean AP"] - 0.005


def test_the_shipped_rule_was_fitted_against_the_shipped_detector() -> None:
    """A rule fitted against other detector weights must be refitted (`lgm-pose fit-fusion`) before it serves."""
    from model.inference.yolo import default_yolo_weights
    from model.nn.checkpoint import checkpoint_fusion, read_checkpoint
    from model.teacher.detections import file_sha256

    rule = checkpoint_fusion(read_checkpoint(WEIGHTS))
    assert rule is not None and len(rule.bias) == 17
    assert rule.detector_sha256 == file_sha256(default_yolo_weights())
    assert rule.out_of_fold["fused (out-of-fold)"]["mean AP"] >= rule.out_of_fold["detector"]["mean AP"] - 0.005
