"""SIGTERM ends `lgm-pose serve` within its shutdown timeout even while a client holds a half-sent body, and the
requests already being served are completed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from live_server import free_port, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[1]


def in_flight_requests(url: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("lgm_pose_requests_in_flight "):
            return float(line.split()[-1])
    return 0.0


def test_sigterm_with_a_half_sent_body(random_checkpoint: Path, bus_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LGM_POSE_POSE_WEIGHTS": str(random_checkpoint), "LGM_POSE_BACKEND": "torch",
           "LGM_POSE_SHUTDOWN_TIMEOUT_S": "3", "LGM_POSE_TORCH_THREADS": "2", "YOLO_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, alive=lambda: proc.poll() is None)
        held = socket.create_connection(("127.0.0.1", port))
        held.sendall(b"POST /pose HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 100000\r\n\r\n"
                     + b"\xff\xd8" + b"x" * 100)  # and then nothing more
        answers: list[int] = []
        data = bus_path.read_bytes()

        def in_flight() -> None:
            r = httpx.post(url + "/pose", content=data, headers={"Content-Type": "image/jpeg"}, timeout=60)
            answers.append(r.status_code)

        worker = threading.Thread(target=in_flight)
        worker.start()
        deadline = time.monotonic() + 30
        while in_flight_requests(url) < 3:  # held, in_flight and this one
            assert time.monotonic() < deadline, "the held and the in-flight request never were both in flight"
            assert proc.poll() is None
            time.sleep(0.01)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        took = time.monotonic() - start
        worker.join(30)
        held.close()
        assert took < 3 + 5, took  # the timeout, plus the models' teardown
        assert answers == [200]
    finally:
        if proc.poll() is None:
            proc.kill()
