"""Training: the pipeline can learn (overfit check on real images) and resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "app.cli"]


def make_subset(data_root: Path, tmp: Path, n_images: int) -> Path:
    """A COCO-format subset of fashion/train in tmp: its own annotation file, images linked, not copied."""
    src = data_root / "fashion"
    data = json.loads((src / "annotations" / "person_keypoints_train.json").read_text())
    images = data["images"][:n_images]
    ids = {img["id"] for img in images}
    subset = {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
    (tmp / "annotations").mkdir(parents=True)
    (tmp / "images" / "train").mkdir(parents=True)
    (tmp / "annotations" / "person_keypoints_train.json").write_text(json.dumps(subset))
    for img in images:
        os.symlink(src / "images" / "train" / img["file_name"], tmp / "images" / "train" / img["file_name"])
    return tmp


def run(*args: str) -> str:
    return subprocess.run([*CLI, *args], check=True, capture_output=True, text=True).stdout


def losses(log: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in log.read_text().splitlines()]


@pytest.mark.timeout(1500)  # fp32 on CPUs without native bf16: about 10 minutes on 2 AVX2 cores
def test_overfit_check_train_loss_halves_then_eval_ap_above_half(data_root: Path, tmp_path: Path) -> None:
    """Overfit check: a few minutes on 8 real training images, then AP on those same images."""
    data = make_subset(data_root, tmp_path / "data", 8)
    out = tmp_path / "run"
    run("train", "--data", str(data), "--epochs", "45", "--samples-per-epoch", "64", "--batch-size", "8",
        "--workers", "0", "--no-augment", "--deterministic", "--seed", "0", "--out", str(out))
    curve = losses(out / "log.jsonl")
    assert curve[-1] <= 0.5 * curve[0], curve
    assert (out / "curves.png").stat().st_size > 0
    result = tmp_path / "eval.json"
    run("eval", "--weights", str(out / "last.pt"), "--data", str(data), "--flip", "--out", str(result))
    ap = json.loads(result.read_text())["table"]["AP"]
    print(f"overfit check: loss {curve[0]:.5f} -> {curve[-1]:.5f}, AP on the same images {ap:.3f}")
    assert ap > 0.5, ap


def test_resume_continues_with_identical_loss(data_root: Path, tmp_path: Path) -> None:
    data = make_subset(data_root, tmp_path / "data", 4)
    common = ["--data", str(data), "--epochs", "2", "--samples-per-epoch", "8", "--batch-size", "4",
              "--workers", "0", "--deterministic", "--seed", "3"]
    run("train", *common, "--out", str(tmp_path / "full"))
    run("train", *common, "--max-minutes", "0.001", "--out", str(tmp_path / "part"))  # stops after epoch 1
    run("train", *common, "--resume", str(tmp_path / "part" / "last.pt"), "--out", str(tmp_path / "part"))
    full, part = losses(tmp_path / "full" / "log.jsonl"), losses(tmp_path / "part" / "log.jsonl")
    assert len(full) == len(part) == 2
    assert part == full


def test_init_fine_tunes_from_checkpoint_weights(data_root: Path, tmp_path: Path, random_checkpoint: Path) -> None:
    import torch

    from model.nn.checkpoint import read_checkpoint
    from model.nn.network import build_model

    data = make_subset(data_root, tmp_path / "data", 2)
    run("train", "--data", str(data), "--epochs", "1", "--samples-per-epoch", "4", "--batch-size", "4",
        "--workers", "0", "--seed", "5", "--lr", "1e-4", "--init", str(random_checkpoint),
        "--out", str(tmp_path / "ft"))
    start, tuned = read_checkpoint(random_checkpoint), read_checkpoint(tmp_path / "ft" / "last.pt")
    assert tuned["meta"]["init_from"] == str(random_checkpoint)
    convs = [k for k, v in start["state_dict"].items() if v.dim() == 4]
    moved = [float((tuned["state_dict"][k] - start["state_dict"][k]).abs().max()) for k in convs]
    assert 0.0 < max(moved) < 1e-3  # one Adam step of lr 1e-4 away from the given weights
    torch.manual_seed(5)  # without --init the run would start from this network: far from the checkpoint
    fresh = build_model("coco_256x192").state_dict()
    assert min(float((fresh[k] - start["state_dict"][k]).abs().max()) for k in convs) > 0.01
