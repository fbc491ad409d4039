"""Partial init: the 16-joint MPII network starts from the shipped COCO weights wherever a tensor fits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.nn.checkpoint import CheckpointError, load_matching_weights, read_checkpoint
from model.nn.network import build_model

pytestmark = pytest.mark.unit
COCO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "lgm_pose_coco_256x192.pt"


def test_mpii_network_takes_every_coco_tensor_that_fits() -> None:
    coco = read_checkpoint(COCO_WEIGHTS)["state_dict"]
    torch.manual_seed(0)
    mpii = build_model("mpii_256x256")
    built = {k: v.clone() for k, v in mpii.state_dict().items()}
    fresh = load_matching_weights(mpii, coco)
    # the head (17 -> 16 joints) and the LARM MLPs over patches (192 -> 256 px wide input) differ: 14 tensors
    assert len(fresh) == 14 and {"head.weight", "head.bias"} <= set(fresh)
    assert all(".global_.mix_patches." in k for k in fresh if not k.startswith("head."))
    state = mpii.state_dict()
    for name, tensor in state.items():
        if name in fresh:
            assert torch.equal(tensor, built[name]), name
        else:
            assert torch.equal(tensor, coco[name]), name
    with torch.no_grad():
        out = mpii.eval()(torch.zeros(1, 3, 256, 256))
    assert out.shape == (1, 16, 64, 64)


def test_a_checkpoint_with_nothing_in_common_is_refused() -> None:
    with pytest.raises(CheckpointError, match="no tensor"):
        load_matching_weights(build_model("mpii_256x256"), {"other.weight": torch.zeros(3)})
