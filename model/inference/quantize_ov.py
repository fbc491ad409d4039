"""Int8 for OpenVINO: NNCF post-training quantisation of an ONNX export, calibrated on real images.

The pose network is calibrated on person crops made as at inference (`quantize.calibration_crops`), the detector on
letterboxed training images (`onnx_detector.letterbox`). The result is an OpenVINO IR beside the export
(`engines.int8_path`), which keeps the export's metadata (OpenVINO's rt_info); the service runs it only once
`lgm-pose check-precision --precision int8` has accepted it. Needs NNCF (an offline tool, not the runtime).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.data.images import image_path, read_image
from model.data.layout import resolve_split, split_data_arg
from model.inference.engines import int8_path
from model.inference.onnx_detector import letterbox


def _detector_inputs(data: str, count: int, imgsz: int = 640) -> list[np.ndarray]:
    folder, _ = split_data_arg(data, None)
    files = resolve_split(folder, "train", "train")
    ann = json.loads(files.annotation.read_text())
    out = []
    for im in ann["images"][:count]:
        try:
            out.append(letterbox(read_image(image_path(files.images, im["file_name"])), imgsz)[0])
        except ValueError:
            continue
    return out


def quantize_openvino(onnx_path: str | Path, data: str, count: int = 300) -> Path:
    """NNCF int8 of an ONNX export (pose or detector) on `count` samples of `data`'s training split."""
    import nncf
    import openvino as ov

    from model.data.meta import META_KEY, PoseMeta
    from model.inference.quantize import calibration_crops

    onnx_path = Path(onnx_path)
    model = ov.Core().read_model(str(onnx_path))
    if model.has_rt_info(["framework", META_KEY]):  # the pose network: person crops, one per sample
        meta = PoseMeta.from_json(model.get_rt_info(["framework", META_KEY]).astype(str))
        folder, _ = split_data_arg(data, None)
        samples = [c[None] for c in calibration_crops(meta, [f"{folder}:train"], count)]
        preset = nncf.QuantizationPreset.PERFORMANCE
    else:  # the YOLO detector: activations quantised symmetric or not, per layer (MIXED)
        samples = _detector_inputs(data, count)
        preset = nncf.QuantizationPreset.MIXED
    quantized = nncf.quantize(model, nncf.Dataset(samples), preset=preset, subset_size=len(samples))
    out = int8_path(onnx_path)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return out
