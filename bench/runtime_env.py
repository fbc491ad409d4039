"""`lgm-pose bench runtime`: the CPU runtime-only install (no torch, torchvision, Ultralytics) beside the full one.

The runtime is the project's base dependencies (pyproject.toml) installed into a fresh venv; it serves ONNX
exports made with the full install (`lgm-pose export`). Reported for both: size on disk, start-up time to ready,
idle RSS after one request.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.server_process import ServerProcess, rss_bytes
from bench.service_load import bus_jpg

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20


def build_runtime_venv(dest: Path) -> Path:
    """A venv at `dest` made as `make serve` makes one on a fresh box (`scripts/install.sh runtime`: this project
    and its runtime dependencies only, pinned by constraints.txt); returns its python."""
    env = {**os.environ, "LGM_VENV": str(dest), "PYTHON": sys.executable}
    subprocess.run([str(REPO / "scripts" / "install.sh"), "runtime"], check=True, env=env, cwd=REPO)
    return dest / "bin" / "python"


def export_models(out: Path, weights: Path | None = None) -> tuple[Path, Path]:
    """The pose and detector ONNX exports (with their metadata), made by the full install."""
    from app.core.settings import DEFAULT_POSE_WEIGHTS

    pose, detector = out / "pose.onnx", out / "detector.onnx"
    subprocess.run([sys.executable, "-m", "app.cli", "export", "--weights", str(weights or DEFAULT_POSE_WEIGHTS),
                    "--out", str(pose), "--detector-out", str(detector)], check=True, cwd=REPO,
                   capture_output=True)
    return pose, detector


def du_bytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def measure(name: str, python: Path, env: dict[str, str], venv: Path, cwd: Path) -> dict[str, Any]:
    import httpx

    start = time.perf_counter()
    with ServerProcess(env=env, cwd=cwd, python=python) as server:
        ready_s = time.perf_counter() - start
        r = httpx.post(server.url + "/pose", content=bus_jpg().read_bytes(), headers={"Content-Type": "image/jpeg"},
                       timeout=60)
        r.raise_for_status()
        time.sleep(1.0)
        rss = rss_bytes(server.pid)
    return {"install": name, "venv_mb": round(du_bytes(venv) / MB), "ready_s": round(ready_s, 1),
            "idle_rss_mb": round(rss / MB), "persons": len(r.json()["persons"])}


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="lgm_pose_runtime_") as tmp:
        tmp_path = Path(tmp)
        pose, detector = export_models(tmp_path)
        t = time.perf_counter()
        runtime_python = build_runtime_venv(tmp_path / "venv")
        print(f"runtime venv built in {time.perf_counter() - t:.0f} s", flush=True)
        jobs = {"LGM_POSE_JOBS_DIR": str(tmp_path / "jobs")}
        rows = [measure("full (torch, Ultralytics; default .pt weights, cached ONNX)", Path(sys.executable), jobs,
                        Path(sys.prefix), REPO),
                measure("runtime only (ONNX exports)", runtime_python,
                        {**jobs, "LGM_POSE_POSE_WEIGHTS": str(pose), "LGM_POSE_DETECTOR_WEIGHTS": str(detector)},
                        tmp_path / "venv", tmp_path)]
    for row in rows:
        print(json.dumps(row))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0
