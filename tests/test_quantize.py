"""Int8 LGM-Pose (ONNX Runtime static quantization) on real crops: metadata kept, keypoints close to fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.settings import DEFAULT_POSE_WEIGHTS
from model.inference.quantize import calibration_crops, quantize_int8
from model.inference.runners import OnnxRunner
from model.nn.checkpoint import load_model
from model.nn.export import export_onnx

pytestmark = [pytest.mark.unit, pytest.mark.timeout(300)]


def test_int8_export_serves_like_fp32(tmp_path: Path, data_root: Path) -> None:
    if not (data_root / "fashion").is_dir():
        pytest.skip("shared data not here")
    fp32 = OnnxRunner(export_onnx(load_model(DEFAULT_POSE_WEIGHTS), tmp_path / "pose.onnx"))
    calib = calibration_crops(fp32.meta, [str(data_root / "fashion") + ":train"], 32, seed=0)
    assert calib.shape == (32, 3, 256, 192) and calib.std() > 0.5  # real, normalised crops
    int8 = OnnxRunner(quantize_int8(tmp_path / "pose.onnx", tmp_path / "pose_int8.onnx", calib))
    assert int8.meta == fp32.meta  # dataset and codec travel with the quantized model
    held_out = calibration_crops(fp32.meta, [str(data_root / "fashion") + ":val"], 16, seed=1)
    a, b = fp32(held_out), int8(held_out)
    peaks_a = np.stack(np.unravel_index(a.reshape(*a.shape[:2], -1).argmax(-1), a.shape[2:]), -1)
    peaks_b = np.stack(np.unravel_index(b.reshape(*b.shape[:2], -1).argmax(-1), b.shape[2:]), -1)
    confident = a.max(axis=(2, 3)) > 0.3
    distance = np.linalg.norm(peaks_a - peaks_b, axis=-1)[confident]
    print(f"\nint8 vs fp32 heatmap peaks over {confident.sum()} confident joints: median {np.median(distance):.3f}, "
          f"p90 {np.percentile(distance, 90):.3f}, p95 {np.percentile(distance, 95):.3f}, max {distance.max():.3f} "
          f"cells; > 1 cell: {(distance > 1).mean():.3f}, > 2 cells: {(distance > 2).mean():.3f}")
    # measured on these 16 held-out crops (202 confident joints): median 0, p95 1.97 cells, 3.5% beyond 2 cells
    # (a few joints jump to another mode, up to 19.7 cells); bounds with room for another CPU's int8 kernels
    assert confident.sum() > 50 and np.median(distance) <= 1.0, (confident.sum(), np.median(distance))
    assert np.percentile(distance, 95) <= 2.5 and (distance > 2).mean() <= 0.06, np.sort(distance)[-20:]
