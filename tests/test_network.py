"""LGM-Pose network: size and cost against the paper, shapes, ONNX parity, strict checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from model.cli.info import model_info
from model.nn.checkpoint import CheckpointError, load_model, save_checkpoint
from model.nn.export import export_onnx
from model.nn.network import build_model, get_config

pytestmark = pytest.mark.e2e  # runs the CLI in a subprocess

PAPER = {  # config: (params M, GMACs) from Tables 1 and 3
    "coco_256x192": (1.1, 0.6),
    "coco_384x288": (1.2, 1.5),
    "mpii_256x256": (1.1, 0.9),
}
ABLATIONS = [  # (fusion, block, paper params M) from Tables 4 and 5 (MPII 256x256)
    ("none", "mobilevim", 0.8), ("conv3x3", "mobilevim", 2.1), ("dw", "mobilevim", 1.08),
    ("dw_g2", "mobilevim", 1.1), ("sfusion", "mobilevim", 1.1), ("sfusion", "mobilevit", 2.5),
]


@pytest.mark.parametrize("config", sorted(PAPER))
def test_info_json_matches_paper(config: str) -> None:
    out = subprocess.run([sys.executable, "-m", "app.cli", "info", "--config", config, "--json"],
                         check=True, capture_output=True, text=True).stdout
    info = json.loads(out)
    assert isinstance(info["params"], int) and isinstance(info["macs"], int)
    params_m, gmacs = PAPER[config]
    assert abs(info["params"] / 1e6 / params_m - 1) <= 0.10, info
    assert abs(info["macs"] / 1e9 / gmacs - 1) <= 0.15, info


def test_params_grow_with_input_size() -> None:
    small, large = (model_info(c)["params"] for c in ("coco_256x192", "coco_384x288"))
    assert large > small


@pytest.mark.parametrize("fusion,block,paper_m", ABLATIONS)
def test_ablation_variants_match_tables(fusion: str, block: str, paper_m: float) -> None:
    info = model_info("mpii_256x256", fusion, block)
    assert abs(info["params"] / 1e6 / paper_m - 1) <= 0.20, info


@pytest.mark.parametrize("config", sorted(PAPER))
def test_output_shape(config: str) -> None:
    cfg = get_config(config)
    model = build_model(cfg).eval()
    h, w = cfg.input_hw
    with torch.no_grad():
        out = model(torch.zeros(2, 3, h, w))
    assert out.shape == (2, cfg.num_joints, h // 4, w // 4)


def test_onnx_matches_torch_on_real_crop(bus_image: np.ndarray, tmp_path) -> None:
    model = build_model("coco_256x192").eval()
    crop = cv2.resize(bus_image[230:900, 40:290], (192, 256))  # the person at the left of bus.jpg
    x = (cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    x = np.concatenate([x, x[:, :, ::-1].copy()])  # batch 2: exercises the dynamic batch axis
    path = export_onnx(model, tmp_path / "m.onnx")
    onnx_out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        torch_out = model(torch.from_numpy(x)).numpy()
    assert onnx_out.shape == torch_out.shape
    assert np.abs(onnx_out - torch_out).max() < 1e-4


def test_checkpoint_roundtrip_and_strict_mismatch(tmp_path) -> None:
    model = build_model("coco_256x192")
    save_checkpoint(tmp_path / "a.pt", model, {"note": "test"})
    loaded = load_model(tmp_path / "a.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    with pytest.raises(CheckpointError, match="does not match network"):
        load_model(tmp_path / "a.pt", "mpii_256x256")


def test_export_cli_with_weights(tmp_path) -> None:
    save_checkpoint(tmp_path / "w.pt", build_model("coco_256x192"))
    out = tmp_path / "m.onnx"
    subprocess.run([sys.executable, "-m", "app.cli", "export", "--weights", str(tmp_path / "w.pt"),
                    "--out", str(out)], check=True, capture_output=True)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((3, 3, 256, 192), np.float32)})[0].shape == (3, 17, 64, 48)
