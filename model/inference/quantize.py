"""Int8 LGM-Pose: ONNX Runtime static quantization, calibrated on real person crops.

Calibration crops are made exactly as at inference (`TopDown.prepare` on ground-truth person boxes of a
COCO-format training set, flip included), so the activation ranges are those the served model sees.
The quantized model keeps the export's metadata (dataset, codec), so `OnnxRunner` serves it unchanged.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import numpy as np

from model.data.images import image_path, read_image
from model.data.layout import resolve_split, split_data_arg
from model.inference.topdown import TopDown, xywh_to_xyxy


def calibration_crops(runner_meta, data: list[str], count: int, seed: int = 0) -> np.ndarray:
    """`count` network inputs from random annotated persons (at least 32 px tall) of the `data` dirs."""
    topdown = TopDown(runner_meta, flip=True)
    persons: list[tuple[Path, list[float]]] = []
    for arg in data:
        folder, split = split_data_arg(arg, None)
        files = resolve_split(folder, split, "train")
        ann = json.loads(files.annotation.read_text())
        names = {im["id"]: im["file_name"] for im in ann["images"]}
        persons += [(image_path(files.images, names[a["image_id"]]), a["bbox"]) for a in ann["annotations"]
                    if a.get("num_keypoints", 0) > 0 and a["bbox"][3] >= 32 and a["image_id"] in names]
    random.Random(seed).shuffle(persons)
    crops: list[np.ndarray] = []
    for path, box in persons:
        if len(crops) >= count:
            break
        try:
            image = read_image(path)
        except ValueError:
            continue
        crops.extend(topdown.prepare(image, xywh_to_xyxy(np.array([box]))).inputs)
    return np.stack(crops[:count]).astype(np.float32)


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over a crop array, a few crops per call."""

    def __init__(self, crops: np.ndarray, input_name: str, batch: int = 8) -> None:
        self.batches = iter([{input_name: crops[i:i + batch]} for i in range(0, len(crops), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def quantize_int8(fp32_onnx: Path, out: Path, crops: np.ndarray, per_channel: bool = True) -> Path:
    """Static int8 (QDQ, per-channel weights, MinMax ranges) of an LGM-Pose export; metadata carried over.

    Weights in 7 bits (`reduce_range`): ONNX Runtime's u8s8 kernels on AVX2 CPUs without VNNI saturate their 16-bit
    sums with 8-bit weights (on one such CPU, p95 18 heatmap cells off fp32 against 1.4 with 7 bits), and the file
    must serve on any CPU."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(str(fp32_onnx))
    input_name = source.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_onnx), str(prepared))
        quantize_static(str(prepared), str(out), _Reader(crops, input_name), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=CalibrationMethod.MinMax, reduce_range=True)
    quantized = onnx.load(str(out))
    del quantized.metadata_props[:]
    for prop in source.metadata_props:
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    quantized.metadata_props.add(key="lgm_pose_precision", value="int8 static (QDQ, per-channel 7-bit weights, MinMax)")
    onnx.save(quantized, str(out))
    return out
