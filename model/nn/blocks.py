"""Building blocks of LGM-Pose: MobileNetV2, LARM/MobileViM, MobileViT and the fusion modules."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_act(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1,
                act: type[nn.Module] | None = nn.SiLU) -> nn.Sequential:
    """Conv, BatchNorm and an optional activation."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 4) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            conv_bn_act(cin, hidden, 1, act=nn.ReLU6),
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            conv_bn_act(hidden, cout, 1, act=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.use_residual else y


class MLPBlock(nn.Module):
    """Eq. (1): LayerNorm, Linear (expand), GELU, Linear (back), over the last dimension; residual."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = max(1, round(dim * ratio))
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class LARM(nn.Module):
    """Lightweight Attentional Representation Module: parameter-free patch transforms around two MLPs.

    NPT-Op.1 unfolds (B, d, H, W) into (B, P, d, N): P = ph*pw pixels of a patch, N patches.
    The first MLP mixes across the N patches (same pixel position), NPT-Op.2 transposes to
    (B, N, d, P), the second MLP mixes the P pixels inside a patch, NPT-Op.3 folds back.
    """

    def __init__(self, feat_hw: tuple[int, int], patch: tuple[int, int], ratio_n: float, ratio_p: float) -> None:
        super().__init__()
        (h, w), (ph, pw) = feat_hw, patch
        if h % ph or w % pw:
            raise ValueError(f"feature {h}x{w} is not divisible by patch {ph}x{pw}")
        self.patch = patch
        self.grid = (h // ph, w // pw)
        self.mix_patches = MLPBlock(self.grid[0] * self.grid[1], ratio_n)
        self.mix_pixels = MLPBlock(ph * pw, ratio_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, _, _ = x.shape
        (ph, pw), (nh, nw) = self.patch, self.grid
        # NPT-Op.1: (B, d, nh, ph, nw, pw) -> (B, ph, pw, d, nh, nw) -> (B, P, d, N)
        u = x.reshape(b, d, nh, ph, nw, pw).permute(0, 3, 5, 1, 2, 4).reshape(b, ph * pw, d, nh * nw)
        u = self.mix_patches(u)
        # NPT-Op.2: (B, P, d, N) -> (B, N, d, P)
        g = self.mix_pixels(u.transpose(1, 3))
        # NPT-Op.3: (B, N, d, P) -> (B, nh, nw, d, ph, pw) -> (B, d, nh, ph, nw, pw) -> (B, d, H, W)
        t = g.reshape(b, nh, nw, d, ph, pw).permute(0, 3, 1, 4, 2, 5)
        return t.reshape(b, d, nh * ph, nw * pw)


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer as in MobileViT (multi-head attention, FFN with SiLU)."""

    def __init__(self, dim: int, heads: int, ffn_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * ffn_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.ffn(self.norm2(x))


class MobileViTGlobal(nn.Module):
    """MobileViT's global representation: unfold to patches, transformers across patches, fold."""

    def __init__(self, dim: int, feat_hw: tuple[int, int], patch: tuple[int, int], layers: int) -> None:
        super().__init__()
        (h, w), (ph, pw) = feat_hw, patch
        if h % ph or w % pw:
            raise ValueError(f"feature {h}x{w} is not divisible by patch {ph}x{pw}")
        self.patch, self.grid = patch, (h // ph, w // pw)
        heads = 4 if dim % 4 == 0 else 1
        self.layers = nn.Sequential(*[TransformerLayer(dim, heads) for _ in range(layers)], nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, _, _ = x.shape
        (ph, pw), (nh, nw) = self.patch, self.grid
        u = x.reshape(b, d, nh, ph, nw, pw).permute(0, 3, 5, 2, 4, 1).reshape(b * ph * pw, nh * nw, d)
        u = self.layers(u)
        t = u.reshape(b, ph, pw, nh, nw, d).permute(0, 5, 3, 1, 4, 2)
        return t.reshape(b, d, nh * ph, nw * pw)


class GlobalBlock(nn.Module):
    """MobileViM (LARM) or MobileViT block: 3x3 conv, 1x1 to d, global module, 1x1 back, fuse with input."""

    def __init__(self, channels: int, dim: int, feat_hw: tuple[int, int], patch: tuple[int, int],
                 kind: str, ratio_n: float, ratio_p: float, vit_layers: int, fuse_kernel: int = 1) -> None:
        super().__init__()
        self.local = nn.Sequential(conv_bn_act(channels, channels, 3), nn.Conv2d(channels, dim, 1, bias=False))
        if kind == "mobilevim":
            self.global_ = LARM(feat_hw, patch, ratio_n, ratio_p)
        elif kind == "mobilevit":
            self.global_ = MobileViTGlobal(dim, feat_hw, patch, vit_layers)
        else:
            raise ValueError(f"unknown global block {kind!r}")
        self.project = conv_bn_act(dim, channels, 1)
        self.fuse = conv_bn_act(2 * channels, channels, fuse_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.global_(self.local(x)))
        return self.fuse(torch.cat([x, y], dim=1))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (B, g*c, H, W) -> interleave the g groups."""
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class Fusion(nn.Module):
    """Fuses the deconvolution output with the same-resolution encoder feature (Table 5 variants).

    none: the deconvolution output passes on alone. All others concatenate [deconv, encoder] and keep
    that width (c_dec + c_enc): conv3x3: a 3x3 conv; dw: depthwise-separable conv (3x3 depthwise,
    1x1 pointwise); dw_g2: a 1x1 group conv (2 groups); sfusion: channel shuffle (2 groups) then the
    1x1 group conv (2 groups), ShuffleNet style, so each group sees both sources.
    """

    KINDS = ("none", "conv3x3", "dw", "dw_g2", "sfusion")

    def __init__(self, kind: str, c_dec: int, c_enc: int, groups: int = 2) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"unknown fusion {kind!r}, choose from {self.KINDS}")
        self.kind, self.groups = kind, groups
        cin = c_dec + c_enc
        self.out_channels = c_dec if kind == "none" else cin
        if kind == "conv3x3":
            self.conv = conv_bn_act(cin, cin, 3, act=nn.ReLU)
        elif kind == "dw":
            self.conv = nn.Sequential(conv_bn_act(cin, cin, 3, groups=cin, act=None),
                                      conv_bn_act(cin, cin, 1, act=nn.ReLU))
        elif kind in ("dw_g2", "sfusion"):
            self.conv = conv_bn_act(cin, cin, 1, groups=groups, act=nn.ReLU)

    def forward(self, dec: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return dec
        x = torch.cat([dec, enc], dim=1)
        if self.kind == "sfusion":
            x = channel_shuffle(x, self.groups)
        return self.conv(x)
