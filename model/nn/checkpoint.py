"""Saving and loading LGM-Pose checkpoints: state dict + network config + metadata, strict keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model.data.meta import PoseMeta
from model.inference.fusion import Fusion
from model.nn.network import LGMPose, NetConfig, build_model, get_config


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit the network it is loaded into."""


def save_checkpoint(path: str | Path, model: LGMPose, meta: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None, pose_meta: PoseMeta | None = None) -> None:
    """Write weights, the config that builds the network, its dataset metadata and codec (`pose_meta`, default:
    the config's), free-form metadata and any extra state (optimizer...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pose_meta = pose_meta or PoseMeta.for_config(model.cfg)
    payload = {"state_dict": model.state_dict(), "config": model.cfg.to_dict(), "pose_meta": pose_meta.to_dict(),
               "meta": meta or {}}
    payload.update(extra or {})
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(payload, dict) and "state_dict" in payload:
        return payload
    if isinstance(payload, dict):
        return {"state_dict": payload, "config": None, "meta": {}}
    raise CheckpointError(f"{path} does not hold a state dict")


def load_weights(model: LGMPose, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load with a readable error that names missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shape = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shape)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{label}: {', '.join(keys[:5])}{more}")
        raise CheckpointError(f"{source} does not match network {model.cfg.name}: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def load_matching_weights(model: LGMPose, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Partial init: every tensor whose name and shape match the network is loaded; returns the names left as built.

    For a network of another config from a checkpoint (the 16-joint MPII model from COCO weights): the backbone
    carries over, the layers that depend on the joints or the input size (head, LARM MLPs) start fresh.
    """
    own = model.state_dict()
    taken = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    if not taken:
        raise CheckpointError(f"no tensor of the checkpoint fits network {model.cfg.name}")
    model.load_state_dict(taken, strict=False)
    return sorted(set(own) - set(taken))


def write_fusion(path: str | Path, fusion: Fusion) -> None:
    """Store the `fused` source's rule in a checkpoint (it travels with the weights, and into ONNX exports)."""
    payload = read_checkpoint(path)
    payload["fusion"] = fusion.to_dict()
    tmp = Path(path).with_suffix(Path(path).suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def checkpoint_fusion(payload: dict[str, Any]) -> Fusion | None:
    """The `fused` source's rule a checkpoint carries (None: never fitted)."""
    stored = payload.get("fusion")
    return Fusion.from_dict(stored) if stored else None


def checkpoint_pose_meta(payload: dict[str, Any], cfg: NetConfig) -> PoseMeta:
    """The dataset metadata and codec a checkpoint carries (older ones: its config's defaults)."""
    stored = payload.get("pose_meta")
    return PoseMeta.from_dict(stored) if stored else PoseMeta.for_config(cfg)


def load_model(weights: str | Path | None, config: str | NetConfig | None = None) -> LGMPose:
    """Build a network from the checkpoint's own config (or the given one) and load the weights strictly.

    The network gets the checkpoint's dataset metadata and codec as `model.pose_meta`.
    """
    if weights is None:
        if config is None:
            raise ValueError("need a config name or a checkpoint")
        return build_model(config)
    payload = read_checkpoint(weights)
    if config is not None:
        cfg = get_config(config) if isinstance(config, str) else config
    elif payload.get("config"):
        cfg = NetConfig.from_dict(payload["config"])
    else:
        raise CheckpointError(f"{weights} carries no config: pass --config")
    model = build_model(cfg)
    load_weights(model, payload["state_dict"], str(weights))
    model.pose_meta = checkpoint_pose_meta(payload, cfg)
    model.fusion = checkpoint_fusion(payload)
    return model.eval()
