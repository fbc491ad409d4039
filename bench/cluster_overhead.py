"""`lgm-pose bench cluster`: what Ray Serve adds to POST /pose latency, against direct uvicorn, side by side.

Both run at once on this machine: `lgm-pose serve` and `lgm-pose serve --cluster local` with one pose replica
(the same models and settings), so each request pays the same compute and the cluster adds its proxy, the
gateway and one Ray call. Runs alternate which system goes first; per concurrency level, the p50 of each run
and the paired ratio cluster/direct, then the medians over runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import numpy as np

from bench.server_process import ServerProcess
from bench.service_load import bus_jpg, load_level


def main(args: argparse.Namespace) -> int:
    data = bus_jpg().read_bytes()
    log = Path(tempfile.mkdtemp(prefix="lgm_pose_bench_cluster_")) / "cluster.log"
    direct = ServerProcess()
    cluster = None
    try:
        cluster = ServerProcess({"LGM_POSE_CLUSTER_NUM_REPLICAS": "1", "LGM_POSE_JOBS_SHARED": "true"},
                                cluster="local", log=log, timeout=300)
        systems = {"direct": direct.url, "cluster": cluster.url}
        for url in systems.values():  # warm-up
            asyncio.run(load_level(url, data, 1, 4))
        runs: list[dict] = []
        for i in range(args.runs):
            order = list(systems) if i % 2 == 0 else list(reversed(systems))
            row: dict = {}
            for c in args.concurrency:
                for name in order:
                    row[f"{name}_c{c}"] = asyncio.run(load_level(systems[name], data, c, args.requests))
                row[f"ratio_c{c}"] = row[f"cluster_c{c}"]["p50_ms"] / row[f"direct_c{c}"]["p50_ms"]
            runs.append(row)
            print(f"run {i + 1}/{args.runs}: " + ", ".join(
                f"c{c} p50 direct {row[f'direct_c{c}']['p50_ms']:.0f} ms, cluster {row[f'cluster_c{c}']['p50_ms']:.0f}"
                f" ms ({row[f'ratio_c{c}']:.3f}x)" for c in args.concurrency), flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
        direct.stop()
    print(f"\nPOST /pose on bus.jpg, {args.requests} requests per level, medians of {args.runs} paired runs:")
    print(f"{'concurrency':>11} {'direct p50 ms':>14} {'cluster p50 ms':>15} {'ratio (median of pairs)':>24} "
          f"{'errors':>7}")
    summary = {}
    for c in args.concurrency:
        d = float(np.median([r[f"direct_c{c}"]["p50_ms"] for r in runs]))
        k = float(np.median([r[f"cluster_c{c}"]["p50_ms"] for r in runs]))
        ratio = float(np.median([r[f"ratio_c{c}"] for r in runs]))
        errors = sum(r[f"{s}_c{c}"]["errors"] for r in runs for s in ("direct", "cluster"))
        summary[c] = {"direct_p50_ms": d, "cluster_p50_ms": k, "ratio": ratio, "errors": errors}
        print(f"{c:>11} {d:>14.1f} {k:>15.1f} {ratio:>24.3f} {errors:>7}")
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    return 0
