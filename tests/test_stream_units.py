"""Unit tests of the stream's parts: IoU tracker, One Euro smoother, stream control parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.core.settings import Settings
from app.stream.session import ControlError, StreamState, apply_control
from app.stream.smoothing import OneEuroFilter, TrackSmoother
from app.stream.tracking import IouTracker, iou_matrix

pytestmark = pytest.mark.unit


def test_iou_matrix_known_values() -> None:
    a = np.array([[0, 0, 10, 10]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=float)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])


def test_tracker_keeps_ids_through_motion_and_a_missed_frame() -> None:
    tracker = IouTracker(iou_threshold=0.3, max_age=2)
    left, right = np.array([0, 0, 20, 40.0]), np.array([100, 0, 120, 40.0])
    first = tracker.update(np.stack([left, right]))
    assert first == [1, 2]
    shift = np.array([4, 0, 4, 0.0])
    assert tracker.update(np.stack([right + shift, left + shift])) == [2, 1]  # order of boxes does not matter
    assert tracker.update(left[None] + 2 * shift) == [1]  # person 2 missed one frame ...
    assert tracker.update(np.stack([left + 3 * shift, right + 3 * shift])) == [1, 2]  # ... and keeps its id
    assert tracker.live_ids() == {1, 2}


def test_tracker_forgets_after_max_age_and_gives_new_ids() -> None:
    tracker = IouTracker(iou_threshold=0.3, max_age=1)
    box = np.array([[0, 0, 20, 40.0]])
    assert tracker.update(box) == [1]
    tracker.update(np.zeros((0, 4)))
    tracker.update(np.zeros((0, 4)))
    assert tracker.live_ids() == set()
    assert tracker.update(box) == [2]


def test_one_euro_passes_first_sample_and_smooths_jitter_at_rest() -> None:
    filt = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    np.testing.assert_array_equal(filt(np.array([5.0]), 0.0), [5.0])
    rng = np.random.default_rng(0)
    noisy = 5.0 + rng.normal(0, 1.0, 300)
    out = np.array([filt(np.array([v]), (i + 1) / 30)[0] for i, v in enumerate(noisy)])
    assert out[50:].std() < 0.5 * noisy[50:].std()


def test_one_euro_follows_fast_motion_with_small_lag() -> None:
    """With beta > 0 the cutoff grows with speed: a ramp of 300 px/s is followed within a few px."""
    slow, fast = OneEuroFilter(1.0, 0.0), OneEuroFilter(1.0, 0.05)
    t = np.arange(60) / 30
    x = 300.0 * t
    lag_slow = x[-1] - [slow(np.array([v]), s) for v, s in zip(x, t, strict=True)][-1][0]
    lag_fast = x[-1] - [fast(np.array([v]), s) for v, s in zip(x, t, strict=True)][-1][0]
    assert lag_fast < 0.3 * lag_slow and lag_fast < 10


def test_track_smoother_forgets_ended_tracks() -> None:
    smoother = TrackSmoother(1.0, 0.01, 1.0)
    smoother.smooth(1, np.zeros((17, 2)), 0.0)
    smoother.smooth(2, np.zeros((17, 2)), 0.0)
    smoother.retain({2})
    assert len(smoother) == 1


def _stream() -> StreamState:
    return StreamState(det_conf=0.25, kpt_thr=0.3, max_persons=20, smoothing=True, tracker=IouTracker(),
                       smoother=TrackSmoother(1.0, 0.01, 1.0))


SETTINGS = Settings(max_persons=20)


def test_control_applies_bounded_parameters() -> None:
    st = _stream()
    assert apply_control(st, {"det_conf": 0.5, "max_persons": 3, "smoothing": False}, SETTINGS) is True
    assert (st.det_conf, st.max_persons, st.smoothing) == (0.5, 3, False)
    assert apply_control(st, {"frame_id": 7, "timestamp_ms": 1500}, SETTINGS) is False
    assert st.next_frame_id == 7 and math.isclose(st.next_timestamp_s, 1.5)


@pytest.mark.parametrize("msg", [[1, 2], {"det_conf": 2.0}, {"kpt_thr": "x"}, {"max_persons": 0},
                                 {"max_persons": 21}, {"max_persons": 1000}, {"max_persons": 1.7},
                                 {"timestamp_ms": float("nan")}, {"frame_id": 1e400}, {"frame_id": -1},
                                 {"smoothing": "false"}, {"det_conf": True}])
def test_control_refuses_bad_messages(msg) -> None:
    """Stream options follow POST /pose's bounds (max_persons <= the service's limit); nothing half-applied."""
    st = _stream()
    with pytest.raises(ControlError):
        apply_control(st, {"kpt_thr": 0.9, **msg} if isinstance(msg, dict) else msg, SETTINGS)
    assert st.kpt_thr == 0.3


def _result(pose_scores: list[float]):
    from app.pipeline.results import PoseResult
    from model.inference.topdown import Poses

    n = len(pose_scores)
    kps = np.array([[[100.0 + 50 * i + dx, 100.0 + dy] for dx, dy in [(0, 0), (20, 0), (10, 60), (0, 120)]]
                    for i in range(n)]).reshape(n, 4, 2)
    boxes = np.array([[90.0 + 50 * i, 90, 130 + 50 * i, 230] for i in range(n)]).reshape(n, 4)
    poses = Poses(boxes=boxes, box_scores=np.full(n, 0.9), keypoints=kps, joint_scores=np.tile([0.9, 0.9, 0.9, 0.1],
                  (n, 1)), pose_scores=np.array(pose_scores, dtype=np.float64), scores=0.9 * np.array(pose_scores),
                  areas=np.ones(n), source_index=np.arange(n))
    return PoseResult(width=640, height=360, poses=poses)


def test_schedule_detects_every_n_frames_and_propagates_boxes_in_between() -> None:
    from app.stream.propagation import DetectionSchedule

    schedule = DetectionSchedule(every=3, min_pose_score=0.4, keypoint_threshold=0.3)
    pattern = []
    for _ in range(7):
        boxes = schedule.next_boxes()
        pattern.append(boxes is None)
        schedule.update(_result([0.8, 0.7]), detected=boxes is None)
    assert pattern == [True, False, False, True, False, False, True]
    boxes, scores = schedule.next_boxes()
    assert boxes.shape == (2, 4) and scores.tolist() == [0.9, 0.9]
    # the box covers the confident keypoints (x 100-120, y 100-160), enlarged; the low-scored one is left out
    assert boxes[0, 0] < 100 and boxes[0, 2] > 120 and boxes[0, 1] < 100 and 160 < boxes[0, 3] < 200


def test_schedule_follows_strong_persons_and_detects_again_when_one_is_lost() -> None:
    from app.stream.propagation import DetectionSchedule

    schedule = DetectionSchedule(every=10, min_pose_score=0.4)
    schedule.update(_result([0.8, 0.2]), detected=True)  # the weak person waits for the next detection
    assert len(schedule.next_boxes()[0]) == 1
    schedule.update(_result([0.8, 0.7]), detected=False)
    assert len(schedule.next_boxes()[0]) == 2
    schedule.update(_result([0.8, 0.3]), detected=False)  # a followed person drifted: detect at once
    assert schedule.next_boxes() is None
    schedule.update(_result([]), detected=True)
    assert schedule.next_boxes() is None


def test_box_from_keypoints_falls_back_and_clips() -> None:
    from app.stream.propagation import box_from_keypoints

    fallback = np.array([1.0, 2, 3, 4])
    few = box_from_keypoints(np.zeros((17, 2)), np.zeros(17), 0.3, fallback, (640, 360))
    np.testing.assert_array_equal(few, fallback)
    pts = np.array([[0.0, 0], [630, 350], [300, 200]])
    box = box_from_keypoints(pts, np.ones(3), 0.3, fallback, (640, 360))
    assert box.tolist() == [0.0, 0.0, 639.0, 359.0]
