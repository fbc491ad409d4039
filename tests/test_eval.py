"""Evaluation: COCO AP through pycocotools, OKS-NMS, PCKh by hand, the engine and `lgm-pose eval` on real data."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from model.data.datasets import MPII
from model.eval.coco import STAT_NAMES, load_coco, nms_per_image, score_results, to_records
from model.eval.coco_engine import evaluate_coco, evaluate_results_file
from model.eval.pckh import evaluate_mpii, pckh
from model.inference.topdown import oks_nms, pose_scores
from model.nn.checkpoint import save_checkpoint
from model.nn.network import build_model

pytestmark = pytest.mark.e2e  # runs the CLI in a subprocess

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def coco_mini(data_root: Path) -> tuple[Path, Path]:
    return (data_root / "coco-mini" / "annotations" / "person_keypoints_train2017.json",
            data_root / "coco-mini" / "images" / "train2017")


@pytest.fixture(scope="module")
def gt_people(coco_mini: tuple[Path, Path]) -> tuple[COCO, list[dict]]:
    coco = load_coco(coco_mini[0])
    anns = [a for a in coco.dataset["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    return coco, anns


def single_person_images(coco: COCO, count: int) -> list[int]:
    """Ids of images holding exactly one non-crowd person with keypoints (cheap for a CPU forward)."""
    ids = []
    for image_id in sorted(coco.getImgIds()):
        people = [a for a in coco.imgToAnns.get(image_id, []) if not a["iscrowd"] and a["num_keypoints"] > 0]
        if len(people) == 1:
            ids.append(image_id)
    return ids[:count]


def gt_records(anns: list[dict], shift: float = 0.0) -> tuple[list[dict], list[float]]:
    """Result records built from ground-truth keypoints (score 1) and the persons' box areas."""
    kps = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), 17, 3)
    records = to_records([a["image_id"] for a in anns], kps[..., :2] + shift, (kps[..., 2] > 0).astype(float),
                         [1.0] * len(anns))
    return records, [a["bbox"][2] * a["bbox"][3] for a in anns]


def test_ground_truth_through_prediction_path_scores_ap_1(gt_people, coco_mini) -> None:
    coco, anns = gt_people
    records, areas = gt_records(anns)
    # Unlabelled GT joints sit at (0, 0) in both poses and would count as perfect matches in the standard
    # all-joint OKS (two 1-keypoint persons of image 322517 reach OKS 0.94): use only the labelled joints.
    kept = nms_per_image(records, areas, vis_threshold=0.5)
    assert len(kept) == len(records) == 86  # OKS-NMS at 0.9 keeps every distinct real person
    scored = score_results(coco_mini[0], kept)
    assert scored["stats"]["AP"] == pytest.approx(1.0)
    assert scored["stats"]["AR"] == pytest.approx(1.0)
    assert "Average Precision" in scored["summary"]


def test_shifted_keypoints_match_pycocotools_directly(gt_people, coco_mini, tmp_path: Path) -> None:
    _, anns = gt_people
    records, _ = gt_records(anns, shift=4.0)
    results_file = tmp_path / "shifted.json"
    results_file.write_text(json.dumps(records))
    ours = evaluate_results_file(coco_mini[0], results_file)["table"]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_mini[0]))
        direct = COCOeval(gt, gt.loadRes(str(results_file)), iouType="keypoints")
        direct.evaluate()
        direct.accumulate()
        direct.summarize()
    assert [ours[name] for name in STAT_NAMES] == [float(v) for v in direct.stats[:6]]
    assert 0.0 < ours["AP"] < 1.0  # a 4 px shift costs small people but not every match


def test_oks_nms_and_rescoring() -> None:
    pose = np.random.default_rng(0).uniform(0, 100, (17, 2))
    poses = np.stack([pose, pose + 0.5, pose + 60.0])
    poses = np.concatenate([poses, np.ones((3, 17, 1))], -1)
    assert oks_nms(poses, np.array([0.5, 0.9, 0.7]), np.array([5000.0] * 3)) == [1, 2]
    poses[0, 3:, 2] = poses[1, 3:, 2] = 0.0  # pose 0 keeps 3 scored joints, 0.5 px off pose 1's
    assert oks_nms(poses, np.array([0.5, 0.9, 0.7]), np.array([5000.0] * 3), vis_threshold=0.3) == [1, 2]
    poses[0, :3, :2] += 40.0  # ... now far off: alike only on unscored joints, kept with vis_threshold
    assert oks_nms(poses, np.array([0.5, 0.9, 0.7]), np.array([5000.0] * 3), vis_threshold=0.3) == [1, 2, 0]
    joint_scores = np.array([[0.1, 0.5, 0.9], [0.1, 0.1, 0.2]])
    np.testing.assert_allclose(np.array([0.8, 1.0]) * pose_scores(joint_scores, 0.2), [0.8 * 0.7, 0.0])


def _mpii_entry(joints: np.ndarray, visible: np.ndarray, headbox: list[float] | None = None) -> dict:
    entry = {"image": "x.jpg", "center": [100.0, 100.0], "scale": 1.0,
             "joints": joints.tolist(), "joints_vis": visible.tolist()}
    if headbox is not None:
        entry["headbox"] = headbox
    return entry


def test_pckh_equals_hand_computation(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    gt = rng.uniform(50, 150, (2, 16, 2))
    visible = np.ones((2, 16))
    visible[1, 0] = 0  # person 2's right ankle unlabelled
    headboxes = [[0.0, 0.0, 30.0, 40.0], [0.0, 0.0, 60.0, 80.0]]  # diagonals 50 and 100: head sizes 30 and 60
    ann = tmp_path / "mpii_val.json"
    ann.write_text(json.dumps([_mpii_entry(gt[i], visible[i], headboxes[i]) for i in range(2)]))
    entries = json.loads(ann.read_text())
    # person 1: joint j off by 4*j px along x (head size 30 -> correct up to 15 px: joints 0..3)
    # person 2: every joint off by 29 px (head size 60 -> correct up to 30 px: all labelled joints)
    pred = gt.copy()
    pred[0, :, 0] += 4.0 * np.arange(16)
    pred[1, :, 1] += 29.0
    result = pckh(pred, np.array([e["joints"] for e in entries]), np.array([e["joints_vis"] for e in entries]),
                  np.array([e["headbox"] for e in entries]))
    hand = {}
    for j, name in enumerate(MPII.joint_names):
        hits = [4.0 * j <= 15.0, True] if j else [True]  # right ankle: person 1 only
        hand[name] = 100.0 * sum(hits) / len(hits)
    assert result["per_joint"] == pytest.approx(hand)
    table = result["table"]
    assert table["Head"] == pytest.approx((hand["head_top"] + hand["upper_neck"]) / 2)
    assert table["Ankle"] == pytest.approx((hand["left_ankle"] + hand["right_ankle"]) / 2)
    # Mean: correct / labelled over the 14 joints other than pelvis and thorax
    used = [j for j, n in enumerate(MPII.joint_names) if n not in ("pelvis", "thorax")]
    correct = sum((4.0 * j <= 15.0) + 1 for j in used) - 1  # right ankle of person 2 is unlabelled
    assert table["Mean"] == pytest.approx(100.0 * correct / (2 * len(used) - 1))
    assert result["head_size"] == "headbox"
    fallback = pckh(pred, gt, visible)  # no head boxes: head_top-upper_neck distance
    assert fallback["head_size"] == "head_top-upper_neck distance"


def test_mpii_runner_on_real_crops(coco_mini, tmp_path: Path) -> None:
    """MPII runner end to end: a 16-joint random network on real images in the MPII json format."""
    _, image_dir = coco_mini
    name = sorted(p.name for p in image_dir.glob("*.jpg"))[0]
    joints = np.tile([[150.0, 150.0]], (16, 1)) + np.arange(16)[:, None] * 5
    ann = tmp_path / "valid.json"
    ann.write_text(json.dumps([dict(_mpii_entry(joints, np.ones(16)), image=name),
                               dict(_mpii_entry(joints, np.ones(16)), image="missing.jpg")]))
    result = evaluate_mpii(build_model("mpii_256x256"), ann, image_dir, batch_size=4)
    assert set(result["table"]) == {"Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean"}
    assert result["counts"]["persons_predicted"] == 1 and result["skipped_images"][0]["image"] == "missing.jpg"
    json.dumps(result)


def test_engine_end_to_end_with_random_model(gt_people, coco_mini, tmp_path: Path) -> None:
    coco, _ = gt_people
    ids = single_person_images(coco, 3)
    calls: list[tuple[int, int]] = []
    result = evaluate_coco(build_model("coco_256x192"), *coco_mini, flip=True, batch_size=2,
                           progress=lambda done, total: calls.append((done, total)), image_ids=ids,
                           results_path=tmp_path / "keypoints.json")
    assert set(result["table"]) == set(STAT_NAMES)
    assert all(0.0 <= v <= 1.0 or v == -1.0 for v in result["table"].values())
    assert result["counts"]["persons"] == result["counts"]["persons_predicted"] == 3
    assert calls[-1] == (3, 3) and not result["skipped_images"] and not result["cancelled"]
    records = json.loads(Path(result["results_path"]).read_text())
    assert len(records) == 3 and len(records[0]["keypoints"]) == 51 and records[0]["category_id"] == 1
    assert result["throughput"]["persons_per_s"] > 0
    json.dumps(result)
    stopped = evaluate_coco(build_model("coco_256x192"), *coco_mini, image_ids=ids, should_stop=lambda: True,
                            results_path=tmp_path / "none.json")
    assert stopped["cancelled"] and stopped["table"] is None and stopped["counts"]["persons_predicted"] == 0


@pytest.fixture()
def two_image_set(gt_people, coco_mini, tmp_path: Path) -> Path:
    """A tmp copy of two coco-mini images in the project layout (split 'mini', the only annotation file)."""
    coco, _ = gt_people
    ids = single_person_images(coco, 2)
    images = [coco.imgs[i] for i in ids]
    data = dict(coco.dataset, images=images,
                annotations=[a for a in coco.dataset["annotations"] if a["image_id"] in set(ids)])
    (tmp_path / "set" / "annotations").mkdir(parents=True)
    (tmp_path / "set" / "images" / "mini").mkdir(parents=True)
    (tmp_path / "set" / "annotations" / "person_keypoints_mini.json").write_text(json.dumps(data))
    for info in images:
        shutil.copy(coco_mini[1] / info["file_name"], tmp_path / "set" / "images" / "mini" / info["file_name"])
    return tmp_path / "set"


def test_corrupt_image_is_reported_and_skipped(two_image_set: Path) -> None:
    ann = two_image_set / "annotations" / "person_keypoints_mini.json"
    image_dir = two_image_set / "images" / "mini"
    bad = json.loads(ann.read_text())["images"][1]["file_name"]
    (image_dir / bad).write_bytes(b"not a jpeg at all")
    result = evaluate_coco(build_model("coco_256x192"), ann, image_dir, results_path=image_dir.parent / "kp.json")
    assert result["skipped_images"] == [{"image": bad, "reason": "unreadable image"}]
    assert result["counts"]["persons_predicted"] == 1 and result["table"] is not None


def test_cli_eval_writes_json(two_image_set: Path, tmp_path: Path) -> None:
    weights = tmp_path / "random.pt"
    save_checkpoint(weights, build_model("coco_256x192"), {"note": "random init, test only"})
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "app.cli", "eval", "--weights", str(weights),
                           "--data", str(two_image_set), "--flip", "--batch-size", "4", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Average Precision" in proc.stdout
    result = json.loads(out.read_text())
    assert set(result["table"]) == set(STAT_NAMES) and result["counts"]["persons_predicted"] == 2
    assert Path(result["results_path"]).is_file() and result["weights"] == str(weights)
