"""What a pose model needs besides its weights: its dataset metadata and its heatmap codec, stored together."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from model.data.codec import HeatmapCodec
from model.data.datasets import DatasetInfo, get_dataset
from model.nn.config import NetConfig

META_KEY = "lgm_pose_meta"  # ONNX metadata: PoseMeta as JSON
CONFIG_KEY = "lgm_pose_config"  # ONNX metadata: NetConfig as JSON
FUSION_KEY = "lgm_pose_fusion"  # ONNX metadata: the fused source's rule (model.inference.fusion) as JSON


@dataclass(frozen=True)
class PoseMeta:
    """Dataset metadata + codec of one model; saved in checkpoints and in ONNX metadata (`to_json`)."""

    dataset: DatasetInfo
    codec: HeatmapCodec

    @classmethod
    def for_config(cls, cfg: NetConfig, sigma: float = 2.0) -> PoseMeta:
        """The default metadata of a network config (its dataset, a codec for its input size)."""
        return cls(get_dataset(cfg.dataset), HeatmapCodec.for_input(cfg.input_hw, sigma))

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset.to_dict(), "codec": self.codec.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoseMeta:
        return cls(DatasetInfo.from_dict(data["dataset"]), HeatmapCodec.from_dict(data["codec"]))

    def require(self, dataset: str, purpose: str) -> None:
        """ValueError unless the model predicts the joints of `dataset` (e.g. COCO evaluation needs COCO)."""
        if self.dataset.name != dataset:
            want = get_dataset(dataset)
            raise ValueError(f"{purpose} needs a {dataset.upper()} model ({want.num_joints} joints), this one "
                             f"predicts {self.dataset.num_joints} {self.dataset.name} joints")

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> PoseMeta:
        return cls.from_dict(json.loads(text))


def pose_meta_of(model: Any) -> PoseMeta:
    """A network's metadata: what its checkpoint carried (`model.pose_meta`), else its config's defaults."""
    meta = getattr(model, "pose_meta", None)
    return meta if isinstance(meta, PoseMeta) else PoseMeta.for_config(model.cfg)
