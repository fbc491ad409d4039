"""Training data in COCO's conventions, on real data and the real teacher (YOLO11n-pose): detector boxes, mirrored
labels fixed, joint offsets measured and removed, contradicted joints down-weighted, teacher fill-ins, and sampling
by person."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from model.data import conventions as conv
from model.data.clean_sets import clean_sets, format_tables
from model.data.cleaning import CONTRADICTED_WEIGHT, clean_set, keypoints_of
from model.data.holdout import write_split
from model.data.matching import read_detections
from model.data.topdown_dataset import PersonSample, load_coco_samples

pytestmark = pytest.mark.unit


def subset(data_root: Path, name: str, split: str, n_images: int | None, out: Path,
           as_split: str | None = None) -> Path:
    """The first n images of a shared set as a COCO-format set of its own (images linked)."""
    src = data_root / name
    data = json.loads((src / "annotations" / f"person_keypoints_{split}.json").read_text())
    ids = {img["id"] for img in data["images"][:n_images]}
    write_split(data, ids, src / "images" / split, out / name, as_split or split)
    return out / name


@pytest.fixture(scope="module")
def sports(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    """All of sports/train (70 images, 165 persons) with the teacher's detections."""
    from model.teacher.detections import detect_set

    tmp = tmp_path_factory.mktemp("sports")
    set_dir = subset(data_root, "sports", "train", None, tmp)
    detect_set(f"{set_dir}:train", tmp / "teacher.json")
    coco = json.loads((set_dir / "annotations" / "person_keypoints_train.json").read_text())
    return coco, read_detections(tmp / "teacher.json"), tmp / "teacher.json"


def by_id(anns: list[dict]) -> dict[int, dict]:
    return {a["id"]: a for a in anns}


def test_matched_persons_are_cropped_by_the_detectors_box(sports) -> None:
    coco, dets, _ = sports
    cleaned, report = clean_set("sports", coco, dets)
    assert report.persons == 165 and report.matched >= 140, report.matched  # 158 measured
    from_detector = [a for a in cleaned if a["box_source"] == "detector"]
    assert len(from_detector) == report.matched
    det_boxes = {tuple(np.round(b, 2)) for d in dets.values() for b in d.boxes}
    for a in from_detector:
        x, y, w, h = a["bbox"]
        assert tuple(np.round([x, y, x + w, y + h], 2)) in det_boxes
    assert all(a["bbox_annotated"] == by_id(coco["annotations"])[a["id"]]["bbox"] for a in cleaned)


def test_mirrored_labels_are_swapped_back(sports) -> None:
    coco, dets, _ = sports
    reference, base = clean_set("sports", coco, dets)
    matched = [a for a in reference if a["box_source"] == "detector" and a["num_keypoints"] >= 15]
    whole, limb = matched[0]["id"], matched[1]["id"]
    broken = copy.deepcopy(coco)
    for a in broken["annotations"]:
        k = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        if a["id"] == whole:
            a["keypoints"] = conv.mirror(k).reshape(-1).tolist()
        if a["id"] == limb:
            a["keypoints"] = conv.mirror(k, [(7, 8)]).reshape(-1).tolist()
    fixed, report = clean_set("sports", broken, dets)
    assert report.whole_swaps == base.whole_swaps + 1
    assert report.pair_swaps[(7, 8)] == base.pair_swaps[(7, 8)] + 1
    for ann_id in (whole, limb):
        np.testing.assert_allclose(by_id(fixed)[ann_id]["keypoints"], by_id(reference)[ann_id]["keypoints"], atol=0.02)


def test_a_systematic_joint_offset_is_measured_and_removed(sports) -> None:
    """Ankles labelled 0.3 torso lengths higher on every person: the table shows +0.3, cleaning puts them back."""
    coco, dets, _ = sports
    reference, base = clean_set("sports", coco, dets)
    raised = copy.deepcopy(coco)
    for a in raised["annotations"]:
        k = keypoints_of(a)
        frame = conv.body_frame(k)
        if frame is None:
            continue
        shift = np.zeros((17, 2))
        shift[[15, 16], 0] = -0.3  # apply_offsets moves by minus the correction: ankles up by 0.3 torso lengths
        moved = conv.apply_offsets(k, shift, frame)
        flat = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        flat[:, :2] = moved[:, :2]
        a["keypoints"] = flat.reshape(-1).tolist()
    cleaned, report = clean_set("sports", raised, dets)
    np.testing.assert_allclose(report.offsets_before[[15, 16], 0] - base.offsets_before[[15, 16], 0], 0.3, atol=0.02)
    assert np.all(np.abs(report.offsets_after[[15, 16], 0]) < 0.01)
    for a in cleaned:  # each ankle back where cleaning puts the unraised one (pair in either order: swaps re-judged)
        frame = conv.body_frame(keypoints_of(by_id(coco["annotations"])[a["id"]]))
        if frame is not None:
            ref = np.asarray(by_id(reference)[a["id"]]["keypoints"]).reshape(-1, 3)
            got = np.asarray(a["keypoints"]).reshape(-1, 3)
            error = min(np.abs(got[15:, :2] - ref[15:, :2]).max(), np.abs(got[15:, :2] - ref[[16, 15], :2]).max())
            assert error < max(0.06 * frame.torso, 1.0)  # 0.3 torso lengths moved; medians refitted after swaps


def test_contradicted_joints_lose_weight_and_unlabelled_ones_are_filled(sports) -> None:
    coco, dets, _ = sports
    reference, base = clean_set("sports", coco, dets)
    victim = next(a for a in reference if a["box_source"] == "detector" and a["keypoint_weights"][9] == 1.0)
    broken = copy.deepcopy(coco)
    ann = by_id(broken["annotations"])[victim["id"]]
    x, y, w, h = ann["bbox"]
    ann["keypoints"][9 * 3:9 * 3 + 2] = [x + w, y + h]  # left wrist moved to the box's far corner
    cleaned, report = clean_set("sports", broken, dets)
    assert by_id(cleaned)[victim["id"]]["keypoint_weights"][9] == CONTRADICTED_WEIGHT
    assert report.contradicted == base.contradicted + 1
    filled = [(a, j) for a in reference for j in range(17)
              if a["keypoint_weights"][j] == 0.5 and by_id(coco["annotations"])[a["id"]]["keypoints"][j * 3 + 2] == 0]
    assert len(filled) == base.filled > 0


def test_a_validation_split_takes_the_training_splits_corrections(data_root: Path, sports, tmp_path: Path) -> None:
    """No teacher on the validation split: only the offsets fitted on training move its joints; boxes stay."""
    _, _, teacher = sports
    train = subset(data_root, "sports", "train", None, tmp_path / "train")
    val = subset(data_root, "sports", "train", 10, tmp_path / "val", as_split="val")  # same set name, split 'val'
    out = tmp_path / "clean"
    reports = clean_sets([f"{train}:train"], [str(teacher)], out)
    reports += clean_sets([f"{val}:val"], ["-"], out)  # a later call: corrections from OUT/conventions.json
    assert reports[1].matched == 0 and reports[1].filled == 0 and reports[1].whole_swaps == 0
    correction = reports[0].correction
    assert np.nanmax(np.abs(correction[[11, 12], 0])) > 0.1  # sports' hips sit well above the teacher's
    original = by_id(json.loads((val / "annotations" / "person_keypoints_val.json").read_text())["annotations"])
    moved = json.loads((out / "sports" / "annotations" / "person_keypoints_val.json").read_text())["annotations"]
    assert len(moved) == len(original)
    checked = 0
    for a in moved:
        k = keypoints_of(original[a["id"]])
        frame = conv.body_frame(k)
        assert a["bbox"] == original[a["id"]]["bbox"]
        if frame is not None:
            expected = conv.apply_offsets(k, correction, frame)
            np.testing.assert_allclose(np.asarray(a["keypoints"]).reshape(-1, 3)[:, :2][k[:, 2] > 0],
                                       expected[k[:, 2] > 0, :2], atol=0.01)
            checked += 1
    assert checked >= 5
    # the training split carries the detector's box errors, which training uses as box jitter
    samples = load_coco_samples(out / "sports" / "annotations" / "person_keypoints_train.json",
                                out / "sports" / "images" / "train", 0.75)
    assert samples[0].box_jitter == tuple(reports[0].box_transform["std"]) and max(samples[0].box_jitter) > 0
    table = format_tables(reports)
    assert "sports:train" in table and "left_hip" in table


def test_lspet_crops_tighten_to_the_detectors_box(data_root: Path, tmp_path: Path) -> None:
    """LSPET's boxes (joint extent + 15 %) are loose: with the detector's boxes a person fills more of the crop."""
    from model.teacher.detections import detect_set

    lspet = subset(data_root, "lspet", "train", 40, tmp_path)
    detect_set(f"{lspet}:train", tmp_path / "teacher.json")
    cleaned, report = clean_set("lspet", json.loads((lspet / "annotations" / "person_keypoints_train.json")
                                                    .read_text()), read_detections(tmp_path / "teacher.json"))
    before, after = report.crop_scale
    assert report.matched >= 25 and after > 1.1 * before, (report.matched, before, after)


def test_sampling_is_by_person_within_three_times_the_median() -> None:
    from model.cli.train import per_sample_weights

    def persons(n: int, source: str) -> list[PersonSample]:
        return [PersonSample("", np.zeros(2), np.ones(2), np.zeros((17, 3)), source)] * n

    sets = [persons(6300, "lspet"), persons(1000, "fashion"), persons(165, "sports")]
    weights = np.asarray(per_sample_weights(sets, [0.5, 0.3, 0.2]))
    assert weights.max() / np.median(weights) == pytest.approx(3.0)
    assert weights.sum() == pytest.approx(1.0)
    shares = [weights[:6300].sum(), weights[6300:7300].sum(), weights[7300:].sum()]
    assert shares[0] > 0.5 and shares[2] < 0.2  # the small set's share shrinks to respect the cap
    assert per_sample_weights(sets, None) is None  # no weights: every person equally often
    weights = np.asarray(per_sample_weights(sets, None, [1.0, 2.0, 5.0]))
    assert weights[0] * 2 == pytest.approx(weights[6300]) and weights[-1] == pytest.approx(3 * weights[0])


def test_ablation_steps_apply_only_what_they_name(sports) -> None:
    coco, dets, _ = sports
    original = by_id(coco["annotations"])
    only_boxes, _ = clean_set("sports", coco, dets, steps=frozenset({"boxes"}))
    for a in only_boxes:  # labels untouched (no swaps, offsets, down-weights or fill-ins); detector boxes kept
        k = np.asarray(original[a["id"]]["keypoints"], dtype=np.float64).reshape(-1, 3)
        np.testing.assert_allclose(np.asarray(a["keypoints"]).reshape(-1, 3)[:, :2][k[:, 2] > 0], k[k[:, 2] > 0, :2],
                                   atol=0.01)
        assert a["keypoint_weights"] == [1.0 if v > 0 else 0.0 for v in k[:, 2]]
    assert sum(a["box_source"] == "detector" for a in only_boxes) >= 140
    no_boxes, report = clean_set("sports", coco, dets, steps=frozenset({"conventions", "fill"}))
    assert all(a["bbox"] == original[a["id"]]["bbox"] and a["box_source"] == "annotation" for a in no_boxes)
    assert report.filled > 0 and np.nanmax(np.abs(report.correction)) > 0.1
