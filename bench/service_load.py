"""`lgm-pose bench service`: load a live server with POST /pose of bus.jpg, against Ultralytics YOLO11n-pose alone.

For each concurrency level: requests/s and p50/p95/p99 latency over HTTP, plus the LGM-Pose pose stage per
person and the detection time, both from the responses' timing_ms. The comparison row runs the same
yolo11n-pose.pt in-process (no HTTP, sequential predictions: Ultralytics' predictor is not thread-safe), which is
what a user would otherwise pick for multi-person pose.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
    return {"system": name, "concurrency": concurrency, "requests": len(latencies) + errors, "errors": errors,
            "rps": len(latencies) / wall if wall > 0 else 0.0, "p50_ms": _pct(ms, 50), "p95_ms": _pct(ms, 95),
            "p99_ms": _pct(ms, 99), "detect_ms": _pct(detect_ms, 50),
            "pose_per_person_ms": _pct(pose_per_person_ms, 50)}


async def load_level(url: str, data: bytes, concurrency: int, requests: int) -> dict[str, Any]:
    """`requests` POST /pose over `concurrency` connections; one result row."""
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
            r = await client.post(url.rstrip("/") + "/pose", content=data, headers={"Content-Type": "image/jpeg"})
            if r.status_code != 200:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t)
            body = r.json()
            detect_ms.append(body["timing_ms"]["detect"])
            if body["persons"]:  # forward time shared out over the crops of each batch
                per_person.append(body["timing_ms"].get("pose_per_person", body["timing_ms"]["pose"]
                                                        / len(body["persons"])))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return _row("lgm-pose service (HTTP)", concurrency, latencies, wall, errors, detect_ms, per_person)


def yolo_pose_alone(weights: Path, image_path: Path, requests: int) -> dict[str, Any]:
    """Ultralytics YOLO pose in-process, sequential predictions on the same image."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import cv2
    from ultralytics import YOLO

    model = YOLO(str(weights))
    image = cv2.imread(str(image_path))
    model.predict(image, verbose=False)  # warm-up
    latencies = []
    start = time.perf_counter()
    for _ in range(requests):
        t = time.perf_counter()
        model.predict(image, classes=[0], verbose=False)
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    return _row(f"ultralytics {weights.stem} (in-process)", 1, latencies, wall, 0, [], [])


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = ("system", "concurrency", "requests", "errors", "rps", "p50_ms", "p95_ms", "p99_ms", "detect_ms",
            "pose_per_person_ms")
    width = max(len(r["system"]) for r in rows)
    print(f"{cols[0]:<{width}} " + " ".join(f"{c:>18}" for c in cols[1:]))
    for r in rows:
        cells = [f"{r[c]:>18.1f}" if isinstance(r[c], float) else f"{r[c]:>18}" for c in cols[1:]]
        print(f"{r['system']:<{width}} " + " ".join(cells))


def main(args: argparse.Namespace) -> int:
    import httpx

    from app.settings import Settings

    image = bus_jpg()
    data = image.read_bytes()
    ready = httpx.get(args.url.rstrip("/") + "/readyz", timeout=10)
    if ready.status_code != 200:
        print(f"server at {args.url} not ready: {ready.status_code} {ready.text}")
        return 1
    print("server:", json.dumps(ready.json().get("model", {})))
    rows = [asyncio.run(load_level(args.url, data, c, args.requests)) for c in args.concurrency]
    rows.append(yolo_pose_alone(Settings().resolved_detector_weights(), image, args.requests))
    print_table(rows)
    print("detect_ms and pose_per_person_ms: medians of the server's timing_ms (forward time / batch size).")
    if args.out:
        Path(args.out).write_text(json.dumps({"server": ready.json(), "rows": rows}, indent=1))
    return 0
