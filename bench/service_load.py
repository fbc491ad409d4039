"""`lgm-pose bench service`: POST /pose of bus.jpg on a live server, against YOLO11n-pose alone, side by side.

For each pose source (`--sources`, default all three) and concurrency level: requests/s and p50/p95/p99 latency
over HTTP, plus the LGM-Pose pose stage per person and the detection time, both from the responses' timing_ms.
The comparison rows run yolo11n-pose in-process on the same JPEG bytes (decoded each time, as the service
decodes each request), sequentially (what a user would otherwise pick for multi-person pose): in the service
detector's runtime (ONNX Runtime, same input size and threads: boxes and its own keypoints) and as Ultralytics'
eager PyTorch default; and behind HTTP, as the smallest service (bench.yolo_service): the fair baseline of
the `detector` source, which pays the same round trip. `--runs N` repeats everything N times in alternation
(paired) and reports medians; without `--url` a fresh `lgm-pose serve` (the environment's settings) is started.
`--runtimes onnxruntime/f32 openvino/bf16 ...` starts one server per BACKEND/PRECISION (both networks; `auto/auto`:
the start-up choice) and measures them side by side in the same alternation; the `pose_runtime` and
`detector_runtime` columns say what each server runs (its /readyz).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def bus_jpg() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / "bus.jpg"


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _row(name: str, concurrency: int, latencies: list[float], wall: float, errors: int,
         detect_ms: list[float], pose_per_person_ms: list[float]) -> dict[str, Any]:
    ms = [v * 1000.0 for v in latencies]
    return {"system": name, "pose_runtime": "-", "detector_runtime": "-", "concurrency": concurrency,
            "requests": len(latencies) + errors, "errors": errors,
            "rps": len(latencies) / wall if wall > 0 else 0.0, "p50_ms": _pct(ms, 50), "p95_ms": _pct(ms, 95),
            "p99_ms": _pct(ms, 99), "detect_ms": _pct(detect_ms, 50),
            "pose_per_person_ms": _pct(pose_per_person_ms, 50)}


async def load_level(url: str, data: bytes, concurrency: int, requests: int, source: str,
                     name: str | None = None) -> dict[str, Any]:
    """`requests` POST /pose?pose_source=`source` over `concurrency` connections; one result row."""
    import httpx

    latencies: list[float] = []
    detect_ms: list[float] = []
    per_person: list[float] = []
    errors = 0
    todo = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for _ in todo:
            t = time.perf_counter()
            r = await client.post(url.rstrip("/") + "/pose", content=data, headers={"Content-Type": "image/jpeg"},
                                  params={"pose_source": source})
            if r.status_code != 200:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t)
            body = r.json()
            if "timing_ms" not in body:  # the YOLO-alone service times nothing
                continue
            detect_ms.append(body["timing_ms"]["detect"])
            if body["persons"] and "pose" in body["timing_ms"]:  # forward time shared out over each batch's crops
                # (`detector` runs no pose stage)
                per_person.append(body["timing_ms"].get("pose_per_person", body["timing_ms"]["pose"]
                                                        / len(body["persons"])))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return _row(name or f"lgm-pose service (HTTP), source {source}", concurrency, latencies, wall, errors, detect_ms,
                per_person)


def _sequential(name: str, predict, requests: int) -> dict[str, Any]:
    predict()  # warm-up
    latencies = []
    start = time.perf_counter()
    for _ in range(requests):
        t = time.perf_counter()
        predict()
        latencies.append(time.perf_counter() - t)
    return _row(name, 1, latencies, time.perf_counter() - start, 0, [], [])


def yolo_pose_alone(weights: Path, image_path: Path, requests: int) -> dict[str, Any]:
    """Ultralytics YOLO pose in-process (eager PyTorch, its default), sequential predictions on the same image."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import cv2
    from ultralytics import YOLO

    model = YOLO(str(weights))
    data = np.frombuffer(image_path.read_bytes(), np.uint8)
    return _sequential(f"ultralytics {weights.stem} eager (in-process)",
                       lambda: model.predict(cv2.imdecode(data, cv2.IMREAD_COLOR), classes=[0], verbose=False),
                       requests)


def yolo_pose_onnx_alone(weights: Path, image_path: Path, requests: int, imgsz: int,
                         threads: int | None) -> dict[str, Any]:
    """YOLO pose in the service detector's runtime (ONNX Runtime, same export, input size and threads), boxes and
    its own keypoints, sequential predictions on the same image."""
    import cv2

    from model.inference.loader import build_detector

    detector = build_detector(weights, "cpu", imgsz, backend="onnxruntime", threads=threads)
    data = np.frombuffer(image_path.read_bytes(), np.uint8)
    return _sequential(f"{weights.stem} in onnxruntime, imgsz {imgsz} (in-process)",
                       lambda: detector.detect_with_keypoints(cv2.imdecode(data, cv2.IMREAD_COLOR), 0.25, 100),
                       requests)


def runtimes_of(ready: dict[str, Any]) -> tuple[str, str]:
    """'backend/precision' of the pose network and of the detector, from a server's /readyz."""
    model, det = ready.get("model") or {}, ready.get("detector_runtime") or {}
    return (f"{model.get('backend', '?')}/{model.get('precision', '?')}",
            f"{det.get('backend', '?')}/{det.get('precision', '?')}")


def runtime_env(spec: str) -> dict[str, str]:
    """The environment of a server whose both networks run BACKEND/PRECISION (`--runtimes`)."""
    backend, precision = spec.split("/")
    return {"LGM_POSE_BACKEND": backend, "LGM_POSE_PRECISION": precision, "LGM_POSE_DETECTOR_BACKEND": backend,
            "LGM_POSE_DETECTOR_PRECISION": precision}


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = ("system", "pose_runtime", "detector_runtime", "concurrency", "requests", "errors", "rps", "p50_ms",
            "p95_ms", "p99_ms", "detect_ms",
            "pose_per_person_ms")
    width = max(len(r["system"]) for r in rows)
    print(f"{cols[0]:<{width}} " + " ".join(f"{c:>18}" for c in cols[1:]))
    for r in rows:
        cells = [f"{r[c]:>18.1f}" if isinstance(r[c], float) else f"{r[c]:>18}" for c in cols[1:]]
        print(f"{r['system']:<{width}} " + " ".join(cells))


def one_run(servers: dict[str, dict[str, Any]], yolo_url: str, data: bytes, image: Path,
            args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every server (url -> its /readyz) at every source and concurrency, then the YOLO-alone rows."""
    from app.core.settings import Settings

    settings = Settings()
    rows = []
    for url, ready in servers.items():
        pose_rt, det_rt = runtimes_of(ready)
        for source in args.sources:
            for c in args.concurrency:
                row = asyncio.run(load_level(url, data, c, args.requests, source))
                rows.append({**row, "pose_runtime": pose_rt, "detector_runtime": det_rt})
    rows += [asyncio.run(load_level(yolo_url, data, c, args.requests, "-", "yolo11n-pose alone behind HTTP (FastAPI)"))
             for c in args.concurrency]
    rows.append(yolo_pose_onnx_alone(settings.resolved_detector_weights(), image, args.requests,
                                     settings.detector_imgsz, settings.torch_threads))
    rows.append(yolo_pose_alone(settings.resolved_detector_weights(), image, args.requests))
    return rows


def medians(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per row (same position in every run): the median of each number over the runs."""
    out = []
    for rows in zip(*runs, strict=True):
        merged = dict(rows[0])
        for key, value in rows[0].items():
            if isinstance(value, float):
                merged[key] = float(np.median([r[key] for r in rows]))
        merged["requests"] = sum(r["requests"] for r in rows)
        merged["errors"] = sum(r["errors"] for r in rows)
        out.append(merged)
    return out


def print_paired_ratios(runs: list[list[dict[str, Any]]]) -> None:
    """requests/s of each server against the first one (`--runtimes`' first), per source and concurrency: the
    median of the per-run ratios (paired: both measured in the same run)."""
    served = [r for r in runs[0] if r["pose_runtime"] != "-"]
    first = served[0]["pose_runtime"], served[0]["detector_runtime"]
    for i, row in enumerate(served):
        if (row["pose_runtime"], row["detector_runtime"]) == first:
            continue
        base = next(j for j, r in enumerate(runs[0]) if (r["pose_runtime"], r["detector_runtime"]) == first
                    and r["system"] == row["system"] and r["concurrency"] == row["concurrency"])
        ratios = [run[i]["rps"] / run[base]["rps"] for run in runs if run[base]["rps"] > 0]
        print(f"{row['system']} c{row['concurrency']}: pose {row['pose_runtime']}, detector {row['detector_runtime']}"
              f" = {np.median(ratios):.2f}x the requests/s of pose {first[0]}, detector {first[1]} (paired median, "
              f"{min(ratios):.2f}-{max(ratios):.2f})")


def main(args: argparse.Namespace) -> int:
    import httpx

    from bench.server_process import ServerProcess, free_port, wait_ready
    from model.inference.cpu_features import cpu_name, shown_flags

    image = bus_jpg()
    data = image.read_bytes()
    models = {k: v for k, v in (("LGM_POSE_POSE_WEIGHTS", args.pose_onnx),
                                ("LGM_POSE_DETECTOR_WEIGHTS", args.detector_onnx)) if v}
    specs = args.runtimes or ([] if args.url else [None])
    started = [ServerProcess(env={**models, **(runtime_env(spec) if spec else {})}) for spec in specs]
    urls = [p.url for p in started] or [args.url.rstrip("/")]
    port = free_port()
    yolo = subprocess.Popen([sys.executable, "-m", "bench.yolo_service", str(port)],
                            env={**os.environ, "YOLO_OFFLINE": "1"})
    yolo_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(yolo_url, alive=lambda: yolo.poll() is None)
        servers = {}
        for url in urls:
            ready = httpx.get(url + "/readyz", timeout=10)
            if ready.status_code != 200:
                print(f"server at {url} not ready: {ready.status_code} {ready.text}")
                return 1
            servers[url] = ready.json()
            print("server:", json.dumps({**ready.json().get("model", {}),
                                         "detector_runtime": ready.json().get("detector_runtime")}))
        print(f"CPU: {cpu_name()}; flags: {shown_flags()}")
        runs = []
        for i in range(args.runs):
            runs.append(one_run(servers, yolo_url, data, image, args))
            print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{r['system'][:24]} {r['pose_runtime']} c{r['concurrency']}"
                                                           f" {r['rps']:.2f}/s" for r in runs[-1]), flush=True)
    finally:
        yolo.terminate()
        for server in started:
            server.stop()
    rows = medians(runs)
    print_table(rows)
    print(f"medians of {args.runs} alternating runs; detect_ms and pose_per_person_ms: medians of the server's "
          "timing_ms (forward time / batch size).")
    if len(servers) > 1:
        print_paired_ratios(runs)
    if args.out:
        Path(args.out).write_text(json.dumps({"servers": servers, "rows": rows, "runs": runs}, indent=1))
    return 0
