"""LGM-Pose: quasi-single-branch encoder/decoder with MobileViM blocks and SFusion (paper §3)."""

from __future__ import annotations

import torch
from torch import nn

from model.nn.blocks import Fusion, GlobalBlock, InvertedResidual, conv_bn_act
from model.nn.config import CONFIGS, NetConfig, get_config

__all__ = ["CONFIGS", "LGMPose", "NetConfig", "build_model", "get_config"]

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
