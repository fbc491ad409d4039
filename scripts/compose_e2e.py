"""End-to-end check of the compose stack brought up by scripts/compose_ci.sh, from the host's published ports.

POST /pose (401 without the API key, poses with it), /readyz, the service container's health check turning
healthy, Prometheus (its container) reporting the service target up with samples of the latency histograms.
Prints the image size and the container's idle memory; exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

SERVICE = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=True).stdout.strip()


def until(what: str, check, timeout: float = 180.0):
    deadline = time.time() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, subprocess.CalledProcessError, KeyError, IndexError, ValueError):
            pass
        if time.time() > deadline:
            sys.exit(f"FAIL: {what} within {timeout:.0f} s")
        time.sleep(1.0)


def bus_jpg() -> bytes:
    import ultralytics

    return (Path(ultralytics.__file__).parent / "assets" / "bus.jpg").read_bytes()


def prom(query: str) -> list[dict]:
    body = httpx.get(PROMETHEUS + "/api/v1/query", params={"query": query}, timeout=10).json()
    return body["data"]["result"]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--project", required=True)
    p.add_argument("--key-file", required=True)
    args = p.parse_args()
    auth = {"Authorization": "Bearer " + Path(args.key_file).read_text().strip()}
    ready = until("/readyz 200", lambda: httpx.get(SERVICE + "/readyz", timeout=5).json()["ready"])
    print("readyz: ready", ready)
    image = {"Content-Type": "image/jpeg"}
    refused = httpx.post(SERVICE + "/pose", content=bus_jpg(), headers=image, timeout=60)
    if refused.status_code != 401:
        sys.exit(f"FAIL: POST /pose without the key answered {refused.status_code}")
    for _ in range(3):
        r = httpx.post(SERVICE + "/pose", content=bus_jpg(), headers={**image, **auth}, timeout=60)
        if r.status_code != 200 or len(r.json()["persons"]) < 3:
            sys.exit(f"FAIL: POST /pose {r.status_code} {r.text[:300]}")
    print(f"POST /pose: 401 without the key, 200 with it, {len(r.json()['persons'])} persons")

    name = podman("ps", "--filter", f"label=io.podman.compose.project={args.project}", "--filter",
                  "label=com.docker.compose.service=lgm-pose", "--format", "{{.Names}}").splitlines()[0]

    def healthy() -> bool:  # no systemd here to run the timer: run the image's HEALTHCHECK as it would
        subprocess.run(["podman", "healthcheck", "run", name], capture_output=True)
        return podman("inspect", "--format", "{{.State.Health.Status}}", name) == "healthy"

    until("the health check to turn healthy", healthy, 120)
    print(f"health check: {name} healthy")

    until("Prometheus to see the service target up",
          lambda: prom('up{job="lgm-pose",variant="cpu"} == 1'), 120)
    samples = until("latency histogram samples in Prometheus", lambda: prom(
        'sum(lgm_pose_request_duration_seconds_bucket{route="/pose",status="200"}) > 0') and prom(
        'sum by (stage) (lgm_pose_stage_duration_seconds_count) > 0'), 120)
    print(f"Prometheus: target up, latency histograms of {len(samples)} stages")

    size_mb = int(podman("image", "inspect", "--format", "{{.Size}}", "lgm-pose:cpu")) / 2**20
    time.sleep(3)
    stats = json.loads(podman("stats", "--no-stream", "--format", "json", name))
    print(json.dumps({"image": "lgm-pose:cpu", "image_mb": round(size_mb), "container": name,
                      "idle_memory": stats[0].get("mem_usage", stats[0])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
