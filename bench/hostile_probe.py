"""What every attack of `lgm-pose bench hostile` measures on the victim server, beside the attack itself.

`measure_attack(server, name, attack)` runs `attack()` (a callable returning a dict of its own figures) in a
process of its own while a prober polls /healthz and a normal client posts bus.jpg sequentially, then checks the
server: /healthz p95 during the attack, the server's CPU and the attacker's (cores busy), RSS added (peak during,
and after it settled), the normal client's requests/s against its idle rate, and whether the server still
answers a genuine request.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.server_process import ServerProcess, reset_peak_rss, rss_bytes
from bench.service_load import bus_jpg

MB = 1 << 20


class Prober(threading.Thread):
    """Polls `url` (GET) every `interval` s until stopped; the latencies in ms (a failure counts as 60 s)."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.url, self.interval, self.latencies_ms = url, interval, []
        self.halt = threading.Event()

    def run(self) -> None:
        import httpx

        with httpx.Client(timeout=60) as client:
            while not self.halt.is_set():
                t = time.perf_counter()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies_ms.append((time.perf_counter() - t) * 1000.0 if ok else 60_000.0)
                self.halt.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self.halt.set()
        self.join(70)
        lat = self.latencies_ms or [float("nan")]
        return {"probes": len(self.latencies_ms), "p50_ms": round(float(np.percentile(lat, 50)), 1),
                "p95_ms": round(float(np.percentile(lat, 95)), 1), "max_ms": round(float(np.max(lat)), 1)}


class NormalClient(threading.Thread):
    """POST /pose of bus.jpg, one after another, until stopped: answers and requests/s."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, {"Content-Type": "image/jpeg", **(headers or {})}
        self.data, self.ok, self.failed = bus_jpg().read_bytes(), 0, 0
        self.halt = threading.Event()

    def run(self) -> None:
        import httpx

        self.started = time.perf_counter()
        with httpx.Client(timeout=120) as client:
            while not self.halt.is_set():
                try:
                    r = client.post(self.url + "/pose", content=self.data, headers=self.headers)
                    self.ok += r.status_code == 200
                    self.failed += r.status_code != 200
                except httpx.HTTPError:
                    self.failed += 1
        self.seconds = time.perf_counter() - self.started

    def stop(self) -> dict[str, float]:
        self.halt.set()
        self.join(180)
        return {"ok": self.ok, "failed": self.failed, "rps": round(self.ok / max(self.seconds, 1e-9), 2)}


def idle_rate(url: str, seconds: float = 5.0, headers: dict[str, str] | None = None) -> float:
    """The normal client's requests/s with nothing else going on."""
    client = NormalClient(url, headers)
    client.start()
    time.sleep(seconds)
    return client.stop()["rps"]


def healthy(url: str, headers: dict[str, str] | None = None) -> bool:
    """/readyz is 200 and a genuine bus.jpg gets persons."""
    import httpx

    try:
        ready = httpx.get(url + "/readyz", timeout=30).status_code == 200
        r = httpx.post(url + "/pose", content=bus_jpg().read_bytes(), timeout=120,
                       headers={"Content-Type": "image/jpeg", **(headers or {})})
        return ready and r.status_code == 200 and len(r.json()["persons"]) > 0
    except httpx.HTTPError:
        return False


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _attack_into(attack: Callable[[], dict[str, Any]], sender: Any) -> None:
    """The attacker process: run the attack, send its figures back."""
    start, cpu = time.perf_counter(), time.process_time()
    try:
        figures = attack()
    except Exception as exc:  # noqa: BLE001 (a figure: how the attack ended)
        figures = {"error": f"{type(exc).__name__}: {exc}"}
    figures["attacker_cpu_cores"] = round((time.process_time() - cpu) / (time.perf_counter() - start), 2)
    sender.send(figures)


def measure_attack(server: ServerProcess, name: str, attack: Callable[[], dict[str, Any]], idle_rss: int,
                   idle_rps: float, headers: dict[str, str] | None = None, settle_s: float = 3.0) -> dict[str, Any]:
    """Run `attack` beside the prober and the normal client; the row of figures (see the module docstring)."""
    reset_peak_rss(server.pid)
    server_cpu = cpu_seconds(server.pid)
    receiver, sender = multiprocessing.Pipe(duplex=False)
    # the attacker in its own process (forked before any thread starts here), as a stranger's machine would be:
    # its client threads never share an interpreter lock with the normal client's
    attacker = multiprocessing.get_context("fork").Process(target=_attack_into, args=(attack, sender), daemon=True)
    start = time.perf_counter()
    attacker.start()
    prober, client = Prober(server.url + "/healthz"), NormalClient(server.url, headers)
    prober.start()
    client.start()
    attacker.join()
    figures = receiver.recv() if receiver.poll(5) else {"error": f"the attacker exited with {attacker.exitcode}"}
    seconds = time.perf_counter() - start
    server_cores = (cpu_seconds(server.pid) - server_cpu) / seconds
    normal, health = client.stop(), prober.stop()
    peak = rss_bytes(server.pid, "VmHWM")
    time.sleep(settle_s)
    after = rss_bytes(server.pid)
    return {"attack": name, "seconds": round(seconds, 1), "attack_figures": figures, "healthz": health,
            "server_cpu_cores": round(server_cores, 2),
            "normal_client": normal, "normal_over_idle": round(normal["rps"] / idle_rps, 2) if idle_rps else None,
            "peak_rss_over_idle_mb": round((peak - idle_rss) / MB),
            "rss_after_over_idle_mb": round((after - idle_rss) / MB),
            "healthy_after": healthy(server.url, headers)}
