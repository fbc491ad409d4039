"""`lgm-pose bench model|service|hostile|runtime|stream|cluster|cooldown|rewrites`."""

from __future__ import annotations

import argparse
import importlib

SUITES = {"model": "bench.model_speed", "service": "bench.service_load", "hostile": "bench.hostile",
          "runtime": "bench.runtime_env", "stream": "bench.stream_load", "cluster": "bench.cluster_overhead",
          "cooldown": "bench.hostile_cooldown", "rewrites": "bench.graph_rewrites"}


def _run(args: argparse.Namespace) -> int:
    return importlib.import_module(SUITES[args.suite]).main(args)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: model (CPU latency), service (live load), "
                                       "hostile (memory and fairness under hostile clients), runtime (the torch-free "
                                       "install beside the full one), stream (video over WS, capacity), "
                                       "cluster (Ray Serve against direct uvicorn), cooldown (compressed-format bombs "
                                       "with the repeat-offender cool-down off and on, side by side), rewrites "
                                       "(exact rewrites of the pose graph in each CPU runtime)")
    p.add_argument("suite", choices=sorted(SUITES))
    p.add_argument("--config", default="coco_256x192")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--url", help="service suite: a running server (default: start one)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--runs", type=int, default=5,
                   help="service suite: alternating runs, medians reported; cooldown suite: off/on pairs")
    p.add_argument("--requests", type=int, default=48, help="service suite: requests per concurrency level")
    p.add_argument("--sources", nargs="+", default=["detector", "fused", "lgm"], choices=["detector", "fused", "lgm"],
                   help="service and stream suites: the pose sources measured")
    p.add_argument("--rounds", type=int, nargs="+", default=[1, 2], choices=[1, 2], help="hostile suite: rounds")
    p.add_argument("--out", help="write the rows as JSON")
    p.add_argument("--pose-onnx", help="model, rewrites and service suites: the LGM-Pose export timed (and its "
                   "precision verdicts beside it); default: the export of the default weights")
    p.add_argument("--detector-onnx", help="model and service suites: the detector export; default: yolo11n-pose's")
    p.add_argument("--runtimes", nargs="+", help="service suite: one server per BACKEND/PRECISION (e.g. "
                   "onnxruntime/f32 openvino/f32 openvino/bf16 auto/auto), measured side by side")
    p.add_argument("--video", help="stream suite: default ../shared/data/videos/street_pedestrians.mp4")
    p.add_argument("--fps", type=float, default=30.0, help="stream suite: the single stream's send rate")
    p.add_argument("--seconds", type=float, default=10.0, help="stream suite: seconds per measurement")
    p.add_argument("--camera-fps", type=float, default=10.0, help="stream suite: each camera's rate (capacity)")
    p.add_argument("--p95-ms", type=float, default=200.0, help="stream suite: latency bound of the capacity")
    p.add_argument("--max-streams", type=int, default=6)
    p.set_defaults(func=_run)
