"""Network configurations of LGM-Pose (torch-free: a runtime without PyTorch reads them from exports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

# Encoder stages after the stem (1/2): (out channels, MobileNetV2 repeats, global blocks, global dim d),
# each starting with a stride-2 MobileNetV2 block: 1/4, 1/8, 1/16, 1/32.
Stage = tuple[int, int, int, int]
DEFAULT_STAGES: tuple[Stage, ...] = ((40, 4, 0, 0), (64, 2, 1, 96), (96, 1, 1, 128), (96, 1, 0, 0))


@dataclass(frozen=True)
class NetConfig:
    """Everything that defines one LGM-Pose network; see docs/DESIGN.md for each choice."""

    name: str
    input_hw: tuple[int, int]
    num_joints: int
    dataset: str = "coco"  # the keypoint set it is built for (model.data.datasets); stored with the weights
    fusion: str = "sfusion"
    block: str = "mobilevim"
    stem: int = 16
    expand: int = 4
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    deconv: tuple[int, ...] = (96, 96, 96)
    patch: tuple[int, int] = (2, 2)
    ratio_n: float = 0.25
    ratio_p: float = 2.0
    vit_layers: int = 6
    fuse_kernel: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetConfig:
        def freeze(v):
            return tuple(freeze(x) for x in v) if isinstance(v, list | tuple) else v
        fields = {k: freeze(v) for k, v in data.items()}
        return cls(**fields)


CONFIGS: dict[str, NetConfig] = {
    "coco_256x192": NetConfig("coco_256x192", (256, 192), 17),
    "coco_384x288": NetConfig("coco_384x288", (384, 288), 17),
    "mpii_256x256": NetConfig("mpii_256x256", (256, 256), 16, "mpii"),
}


def get_config(name: str, fusion: str | None = None, block: str | None = None) -> NetConfig:
    """A named config, optionally with an ablation switch changed."""
    if name not in CONFIGS:
        raise KeyError(f"unknown config {name!r}; choose from {sorted(CONFIGS)}")
    cfg = CONFIGS[name]
    if fusion:
        cfg = replace(cfg, fusion=fusion)
    if block:
        cfg = replace(cfg, block=block)
    return cfg
