"""SimpleBaseline with a MobileNetV2 backbone: the paper's 'MobileNetV2 1x' row."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import mobilenet_v2


class SimpleBaselineMobileNetV2(nn.Module):
    """torchvision mobilenet_v2 features (1280 ch at 1/32) + three 4x4 deconvs of 256 + 1x1 head."""

    def __init__(self, num_joints: int = 17) -> None:
        super().__init__()
        self.backbone = mobilenet_v2(weights=None).features
        layers: list[nn.Module] = []
        cin = 1280
        for _ in range(3):
            layers += [nn.ConvTranspose2d(cin, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True)]
            cin = 256
        self.deconv = nn.Sequential(*layers)
        self.head = nn.Conv2d(256, num_joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.deconv(self.backbone(x)))
