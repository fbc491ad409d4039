"""LGM-Pose: quasi-single-branch encoder/decoder with MobileViM blocks and SFusion (paper §3)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from model.blocks import Fusion, GlobalBlock, InvertedResidual, conv_bn_act

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

    @property
    def heatmap_hw(self) -> tuple[int, int]:
        return self.input_hw[0] // 4, self.input_hw[1] // 4

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
    "mpii_256x256": NetConfig("mpii_256x256", (256, 256), 16),
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


class LGMPose(nn.Module):
    """Encoder (MobileNetV2 + global blocks) to 1/32, three deconvs back to 1/4, each followed by fusion."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, w = cfg.input_hw
        if h % 32 or w % 32:
            raise ValueError(f"input {h}x{w} must be divisible by 32")
        self.stem = nn.Sequential(conv_bn_act(3, cfg.stem, 3, 2, act=nn.ReLU6),
                                  InvertedResidual(cfg.stem, cfg.stem, 1, cfg.expand))
        self.stages = nn.ModuleList()
        skip_channels: list[int] = []
        cin, stride_total = cfg.stem, 2
        for cout, repeats, n_global, dim in cfg.stages:
            stride_total *= 2
            feat_hw = (h // stride_total, w // stride_total)
            layers: list[nn.Module] = [InvertedResidual(cin, cout, 2, cfg.expand)]
            layers += [InvertedResidual(cout, cout, 1, cfg.expand) for _ in range(repeats - 1)]
            layers += [GlobalBlock(cout, dim, feat_hw, cfg.patch, cfg.block,
                                   cfg.ratio_n, cfg.ratio_p, cfg.vit_layers,
                                   cfg.fuse_kernel) for _ in range(n_global)]
            self.stages.append(nn.Sequential(*layers))
            skip_channels.append(cout)
            cin = cout
        self.deconvs = nn.ModuleList()
        self.fusions = nn.ModuleList()
        for c_dec, c_enc in zip(cfg.deconv, reversed(skip_channels[:-1]), strict=True):
            self.deconvs.append(nn.Sequential(
                nn.ConvTranspose2d(cin, c_dec, 4, 2, 1, bias=False), nn.BatchNorm2d(c_dec), nn.ReLU()))
            self.fusions.append(Fusion(cfg.fusion, c_dec, c_enc))
            cin = self.fusions[-1].out_channels
        self.head = nn.Conv2d(cin, cfg.num_joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        for deconv, fusion, skip in zip(self.deconvs, self.fusions, reversed(skips[:-1]), strict=True):
            x = fusion(deconv(x), skip)
        return self.head(x)


def build_model(cfg: NetConfig | str) -> LGMPose:
    return LGMPose(get_config(cfg) if isinstance(cfg, str) else cfg)
