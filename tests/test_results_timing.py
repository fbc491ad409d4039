"""The one results object renders JSON, COCO records and stream messages from the same arrays; the stage timer
fills both `timing_ms` and the Prometheus stage histogram."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.metrics import Metrics
from app.pipeline.results import PoseResult
from app.pipeline.timing import StageTimer
from model.data.datasets import COCO
from model.inference.topdown import Poses

pytestmark = pytest.mark.unit


def _result() -> PoseResult:
    k = COCO.num_joints
    kps = np.stack([np.c_[np.linspace(10, 50, k), np.linspace(20, 90, k)], np.c_[np.full(k, 70.0), np.arange(k)]])
    poses = Poses(boxes=np.array([[5.0, 10, 60, 100], [60, 0, 80, 20]]), box_scores=np.array([0.9, 0.5]),
                  keypoints=kps, joint_scores=np.full((2, k), 0.8), pose_scores=np.array([0.8, 0.8]),
                  scores=np.array([0.72, 0.4]), areas=np.ones(2), source_index=np.arange(2))
    return PoseResult(width=100, height=120, poses=poses, timing_ms={"total": 1.0}, batch_sizes=[2])


def test_one_result_renders_json_coco_and_stream_from_the_same_arrays() -> None:
    result = _result()
    body = result.to_json(COCO)
    assert [p["box"] for p in body["persons"]] == result.poses.boxes.tolist()
    assert body["persons"][1]["keypoints"][3] == {"name": COCO.joint_names[3], "x": 70.0, "y": 3.0, "score": 0.8}
    coco = result.to_coco(7)
    assert [r["bbox"] for r in coco] == [[5.0, 10.0, 55.0, 90.0], [60.0, 0.0, 20.0, 20.0]]
    assert coco[0]["keypoints"][:3] == [10.0, 20.0, 0.8] and coco[1]["score"] == 0.4 and coco[0]["image_id"] == 7
    msg = result.to_stream(3, [11, 12], list(result.poses.keypoints), 5.0, smoothing=False)
    assert [p["track_id"] for p in msg["persons"]] == [11, 12] and msg["frame_id"] == 3
    assert msg["persons"][1]["keypoints"][3] == [70.0, 3.0, 0.8]
    empty = PoseResult(width=1, height=1, poses=result.poses.take([]))
    assert empty.to_coco(1) == [] and empty.to_json(COCO)["persons"] == []


def test_stage_timer_fills_timing_and_histogram() -> None:
    metrics = Metrics()
    timer = StageTimer(metrics)
    with timer.stage("prepare"):
        pass
    timer.record("pose", 0.002)
    timer.note("pose_per_person", 0.001)
    with pytest.raises(RuntimeError), timer.stage("postprocess"):
        raise RuntimeError("a failed stage is not recorded")
    timing = timer.finish()
    assert list(timing) == ["prepare", "pose", "pose_per_person", "total"] and timing["pose"] == 2.0
    count = metrics.registry.get_sample_value
    assert count("lgm_pose_stage_duration_seconds_count", {"stage": "prepare", "source": "lgm"}) == 1
    assert count("lgm_pose_stage_duration_seconds_count", {"stage": "pose", "source": "lgm"}) == 1
    assert count("lgm_pose_stage_duration_seconds_count", {"stage": "postprocess", "source": "lgm"}) == 0
    detector = StageTimer(metrics, "detector")  # the pose source labels every stage series
    detector.record("detect", 0.001)
    assert count("lgm_pose_stage_duration_seconds_count", {"stage": "detect", "source": "detector"}) == 1
    assert count("lgm_pose_stage_duration_seconds_count", {"stage": "detect", "source": "lgm"}) == 0
    assert count("lgm_pose_stage_duration_seconds_count", {"stage": "pose", "source": "detector"}) is None
