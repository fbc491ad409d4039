"""The `fused` source's rule (model.inference.fusion) and its fit (model.eval.fusion_fit) on constructed persons."""

from __future__ import annotations

import numpy as np
import pytest

from model.eval.fusion_fit import SourcePairs, cross_fit, fit
from model.inference.fusion import Fusion

pytestmark = pytest.mark.unit
K = 17


def constructed(lgm_error: float, det_error: float, n: int = 200, seed: int = 0) -> SourcePairs:
    """Persons of 100x200 px on 40 images; each source misses the truth by about its error (pixels)."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0, 100, (n, K, 2)) + np.array([0, 50])
    return SourcePairs(
        image_ids=np.arange(n) % 40, boxes=np.tile([0, 0, 100, 200], (n, 1)).astype(float), box_scores=np.ones(n),
        crop_sizes=np.tile([150.0, 250.0], (n, 1)),
        lgm_xy=gt + rng.normal(0, lgm_error, gt.shape), lgm_scores=rng.uniform(0.5, 0.9, (n, K)),
        det_xy=gt + rng.normal(0, det_error, gt.shape), det_scores=rng.uniform(0.5, 0.9, (n, K)),
        gt_xy=gt, gt_labelled=np.ones((n, K), bool), gt_area=np.full(n, 100 * 200 * 0.5))


def mean_error(xy: np.ndarray, pairs: SourcePairs) -> float:
    return float(np.linalg.norm(xy - pairs.gt_xy, axis=-1).mean())


def test_the_accurate_source_gets_the_weight_whichever_it_is() -> None:
    lgm_better = constructed(lgm_error=2.0, det_error=15.0)
    bias, gain = fit(lgm_better, np.ones(200, bool))
    rule = Fusion(tuple(bias), tuple(gain))
    weights = rule.lgm_weight(lgm_better.lgm_scores, lgm_better.det_scores)
    assert weights.mean() > 0.8  # a rule that always returns the detector's keypoints gives 0 here
    xy, _ = cross_fit(lgm_better)
    assert mean_error(xy, lgm_better) < 0.5 * mean_error(lgm_better.det_xy, lgm_better)

    det_better = constructed(lgm_error=15.0, det_error=2.0, seed=1)
    bias, gain = fit(det_better, np.ones(200, bool))
    assert Fusion(tuple(bias), tuple(gain)).lgm_weight(det_better.lgm_scores, det_better.det_scores).mean() < 0.2
    xy, _ = cross_fit(det_better)
    assert mean_error(xy, det_better) < 0.5 * mean_error(det_better.lgm_xy, det_better)


def test_equal_sources_are_averaged_and_beat_either_alone() -> None:
    pairs = constructed(lgm_error=6.0, det_error=6.0, seed=2)
    xy, _ = cross_fit(pairs)
    assert mean_error(xy, pairs) < 0.85 * min(mean_error(pairs.lgm_xy, pairs), mean_error(pairs.det_xy, pairs))


def test_the_confident_estimate_takes_over_when_scores_say_so() -> None:
    """LGM-Pose right exactly where it is the more confident one: the fit learns a positive gain."""
    pairs = constructed(lgm_error=2.0, det_error=2.0, seed=3)
    lgm_sure = pairs.lgm_scores > pairs.det_scores
    rng = np.random.default_rng(4)
    pairs.lgm_xy[~lgm_sure] += rng.normal(0, 30, pairs.lgm_xy[~lgm_sure].shape)
    pairs.det_xy[lgm_sure] += rng.normal(0, 30, pairs.det_xy[lgm_sure].shape)
    bias, gain = fit(pairs, np.ones(200, bool))
    assert np.median(gain) >= 8
    xy, _ = cross_fit(pairs)
    assert mean_error(xy, pairs) < 0.6 * min(mean_error(pairs.lgm_xy, pairs), mean_error(pairs.det_xy, pairs))


def test_scores_stay_in_unit_range_and_the_rule_round_trips() -> None:
    rule = Fusion(tuple([0.5] * K), tuple([4.0] * K), "abc", "constructed")
    xy, scores = rule.fuse(np.zeros((2, K, 2)), np.full((2, K), 1.0012), np.ones((2, K, 2)), np.full((2, K), 0.3))
    assert scores.max() <= 1.0 and scores.min() >= 0.0 and xy.shape == (2, K, 2)
    assert Fusion.from_dict(rule.to_dict()) == rule


def test_the_rule_travels_from_checkpoint_to_onnx_metadata(random_checkpoint, tmp_path) -> None:
    import shutil

    from model.inference.runners import OnnxRunner, TorchRunner
    from model.nn.checkpoint import load_model, write_fusion
    from model.nn.export import export_onnx

    rule = Fusion(tuple(np.linspace(-2, 2, K)), tuple([4.0] * K), "f" * 64, "constructed")
    weights = tmp_path / "w.pt"
    shutil.copy(random_checkpoint, weights)
    assert load_model(weights).fusion is None
    write_fusion(weights, rule)
    model = load_model(weights)
    assert TorchRunner(model).fusion == rule
    assert OnnxRunner(export_onnx(model, tmp_path / "w.onnx")).fusion == rule
