"""Parameter and multiply-accumulate counts, measured with PyTorch's own FLOP counter."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_hw: tuple[int, int]) -> int:
    """MACs of one forward pass at batch 1: torch's FlopCounterMode counts 2 FLOPs per MAC."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, *input_hw))
    model.train(was_training)
    return counter.get_total_flops() // 2
