"""`lgm-pose bench hostile`: what hostile but legitimate clients cost a real `lgm-pose serve` process.

1. Memory: 64 concurrent pixel-amplification uploads (a few hundred bytes whose JPEG header claims 40 MP, then
   15.6 MP, under the pixel limit), then 64 concurrent genuine large photos (bus.jpg upscaled to the pixel
   limit): every answer must be 200, a 4xx or 503, the server healthy after, and its peak RSS (VmHWM, reset
   before each burst) within 1.5 GB of its idle RSS.
2. Fairness: POST /pose of bus.jpg, sequentially, idle and then while one stream sends controls and frames meant
   to maximise its work (det_conf 0, max_persons at the limit, a crowded full-HD frame, never waiting for
   answers): the POST's p95 must stay under twice its idle value.
The server runs in its own process with the environment's settings (LGM_POSE_*), so its RSS is its own.
3. The second round (bench/hostile_round2.py, issue 25): the HTTP edge, compressed-format bombs, WebSocket floods.
`--rounds 1 2` picks them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.hostile_probe import MB, healthy
from bench.server_process import ServerProcess, reset_peak_rss, rss_bytes
from bench.service_load import bus_jpg

CROWD_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "towncentre_pedestrians.mp4"


def amplification_jpeg(width: int = 6000, height: int = 6600) -> bytes:
    """A real 16x16 JPEG whose header is rewritten to claim width x height pixels: a few hundred bytes."""
    import cv2

    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def large_photo(max_pixels: int) -> bytes:
    """bus.jpg upscaled to just under `max_pixels`: a genuine photo that passes every header check."""
    import cv2

    image = cv2.imread(str(bus_jpg()))
    scale = (max_pixels * 0.98 / (image.shape[0] * image.shape[1])) ** 0.5
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()


def crowded_frame() -> bytes:
    """A full-HD frame of the crowded town-centre video if the shared data is here, else zidane.jpg."""
    import cv2

    cap = cv2.VideoCapture(str(CROWD_VIDEO))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 30)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        return (bus_jpg().parent / "zidane.jpg").read_bytes()
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


async def burst(url: str, data: bytes, n: int, address: str = "127.0.0.1") -> list[int]:
    """`n` concurrent POST /pose of `data` from the local `address`; their status codes (0: no answer)."""
    import httpx

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=n),
                                 transport=httpx.AsyncHTTPTransport(local_address=address)) as client:
        async def one() -> int:
            try:
                r = await client.post(url + "/pose", content=data, headers={"Content-Type": "image/jpeg"})
                return r.status_code
            except httpx.HTTPError:
                return 0
        return list(await asyncio.gather(*(one() for _ in range(n))))


def memory_burst(server: ServerProcess, name: str, data: bytes, n: int, idle_rss: int,
                 address: str = "127.0.0.1") -> dict[str, Any]:
    """One burst from `address` (each burst its own, as strangers' would be: the server cools down an address
    whose uploads it keeps refusing, app/core/offenders.py); the server's peak RSS and health after."""
    reset_peak_rss(server.pid)
    start = time.perf_counter()
    statuses = asyncio.run(burst(server.url, data, n, address))
    counts = {str(code): statuses.count(code) for code in sorted(set(statuses))}
    peak = rss_bytes(server.pid, "VmHWM")
    return {"burst": name, "requests": n, "bytes_each": len(data), "statuses": counts,
            "all_answered": all(c == 200 or 400 <= c < 500 or c == 503 for c in statuses),
            "peak_rss_mb": round(peak / MB), "peak_over_idle_mb": round((peak - idle_rss) / MB),
            "seconds": round(time.perf_counter() - start, 1),
            "healthy_after": healthy(server.url)}


def post_latencies_ms(url: str, data: bytes, n: int) -> dict[str, Any]:
    """`n` sequential POST /pose: p50/p95 of the client's latency and of the server's stages (ms)."""
    import httpx

    latencies, stages = [], []
    with httpx.Client(timeout=120) as client:
        for _ in range(n):
            t = time.perf_counter()
            r = client.post(url + "/pose", content=data, headers={"Content-Type": "image/jpeg"})
            r.raise_for_status()
            latencies.append((time.perf_counter() - t) * 1000.0)
            stages.append(r.json()["timing_ms"])
    return {"p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p95_ms": round(float(np.percentile(latencies, 95)), 1),
            "server_stage_p50_p95_ms": {k: [round(float(np.percentile([st.get(k, 0.0) for st in stages], q)), 1)
                                            for q in (50, 95)] for k in stages[0]}}


class HostileStream:
    """One WS client that maximises its work: re-detect every frame at det_conf 0 and max_persons at the limit,
    crowded frames sent without waiting for answers (a reader thread drains the answers)."""

    def __init__(self, url: str, frame: bytes, max_persons: int) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url.replace("http", "ws", 1) + "/ws/pose", max_size=None, compression=None)
        self.ws.recv(timeout=30)  # hello
        self.control = json.dumps({"det_conf": 0, "max_persons": max_persons, "reset": True})
        self.frame, self.stop, self.answers, self.last = frame, threading.Event(), 0, {}
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._send, self._read)]
        for t in self.threads:
            t.start()

    def _send(self) -> None:
        while not self.stop.is_set():
            self.ws.send(self.control)
            self.ws.send(self.frame)
            time.sleep(0.005)

    def _read(self) -> None:
        try:
            while True:
                msg = json.loads(self.ws.recv())
                if msg.get("type") == "pose":
                    self.answers += 1
                    self.last = msg
        except Exception:  # noqa: BLE001 (the socket closed: the benchmark is over)
            return

    def close(self) -> dict[str, Any]:
        self.stop.set()
        self.threads[0].join(5)
        self.ws.close()
        return {"answers": self.answers, "persons_last_frame": len(self.last.get("persons", [])),
                "totals": self.last.get("totals", {})}


def fairness(server: ServerProcess, requests: int) -> dict[str, Any]:
    from app.core.settings import Settings

    photo = bus_jpg().read_bytes()
    post_latencies_ms(server.url, photo, 3)  # warm-up
    idle = post_latencies_ms(server.url, photo, requests)
    stream = HostileStream(server.url, crowded_frame(), Settings().max_persons)
    time.sleep(2.0)  # the stream is at full work before the POSTs start
    attacked = post_latencies_ms(server.url, photo, requests)
    stream_totals = stream.close()
    return {"requests": requests, "idle": idle, "with_hostile_stream": attacked, "stream": stream_totals,
            "p95_ratio": round(attacked["p95_ms"] / idle["p95_ms"], 2),
            "p95_under_twice_idle": attacked["p95_ms"] < 2 * idle["p95_ms"]}


def first_round(args: argparse.Namespace) -> dict[str, Any]:
    """Memory bursts and the stream fairness check of the first round."""
    from app.core.settings import Settings

    n = 64
    with ServerProcess() as server:
        time.sleep(1.0)
        idle_rss = rss_bytes(server.pid)
        print(f"server pid {server.pid}: idle RSS {idle_rss / MB:.0f} MB; settings: max_pixels "
              f"{Settings().max_pixels}, pixels in flight {Settings().max_pixels_in_flight}", flush=True)
        report: dict[str, Any] = {"server": server.ready.get("model", {}), "idle_rss_mb": round(idle_rss / MB),
                                  "budget_over_idle_mb": 1536, "bursts": []}
        for i, (name, data) in enumerate((
                ("pixel amplification (header claims 40 MP)", amplification_jpeg()),
                ("pixel amplification under the pixel limit (15.6 MP)", amplification_jpeg(3900, 4000)),
                ("genuine photo at the pixel limit", large_photo(Settings().max_pixels)))):
            row = memory_burst(server, name, data, n, idle_rss, address=f"127.0.0.{3 + i}")
            row["within_budget"] = row["peak_over_idle_mb"] <= report["budget_over_idle_mb"]
            report["bursts"].append(row)
            print(json.dumps(row), flush=True)
        report["fairness"] = fairness(server, args.requests)
        print(json.dumps(report["fairness"]), flush=True)
    ok = all(b["all_answered"] and b["healthy_after"] and b["within_budget"] for b in report["bursts"])
    report["ok"] = ok and report["fairness"]["p95_under_twice_idle"]
    return report


def main(args: argparse.Namespace) -> int:
    from bench.hostile_round2 import run

    report = {}
    if 1 in args.rounds:
        report["first_round"] = first_round(args)
    if 2 in args.rounds:
        report["second_round"] = run()
    ok = all(part["ok"] for part in report.values())
    print("PASS" if ok else "FAIL", {name: part["ok"] for name, part in report.items()})
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0 if ok else 1
