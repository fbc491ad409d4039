"""`lgm-pose bench stream`: WS /ws/pose on real street footage, per stream and for several camera streams at once.

A client sends the frames of `street_pedestrians.mp4` (640x360, several people) at a fixed rate (30 fps, or as fast
as it can with `--fps 0`), each announced by its frame id, and reads the answers on another thread: frames/s
processed, latency from sending a frame to its answer (p50/p95), frames dropped by the server (latest frame
wins). Capacity: 1, 2, 3... streams at `--camera-fps` (10) each until a stream's p95 passes `--p95-ms` (200) or
it processes under 90% of its frames; the per-stream frame rates show how fairly they are served. Without
`--url` a fresh `lgm-pose serve` is started with the environment's settings.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.server_process import ServerProcess

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "street_pedestrians.mp4"


def video_frames(path: Path, count: int) -> list[bytes]:
    """The first `count` frames as JPEG (quality 90), as a camera client would send them."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    cap.release()
    if not frames:
        raise FileNotFoundError(f"no frames in {path}")
    return frames


class StreamClient:
    """One camera: frames at `fps` (0: as fast as the socket takes them) for `seconds`, answers timed."""

    def __init__(self, url: str, frames: list[bytes], fps: float, seconds: float) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url.replace("http", "ws", 1) + "/ws/pose", max_size=None, compression=None)
        json.loads(self.ws.recv(timeout=30))  # hello
        self.frames, self.fps, self.seconds = frames, fps, seconds
        self.sent: dict[int, float] = {}
        self.latencies_ms: list[float] = []
        self.dropped = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.sender = threading.Thread(target=self._send, daemon=True)

    def start(self) -> None:
        self.started = time.perf_counter()
        self.reader.start()
        self.sender.start()

    def _send(self) -> None:
        i = 0
        while (now := time.perf_counter()) - self.started < self.seconds:
            self.sent[i] = now
            self.ws.send(json.dumps({"frame_id": i}))
            self.ws.send(self.frames[i % len(self.frames)])
            i += 1
            if self.fps > 0:
                time.sleep(max(0.0, self.started + i / self.fps - time.perf_counter()))

    def _read(self) -> None:
        try:
            while True:
                msg = json.loads(self.ws.recv())
                if msg.get("type") == "pose":
                    self.latencies_ms.append((time.perf_counter() - self.sent[msg["frame_id"]]) * 1000.0)
                    self.dropped += msg.get("dropped", 0)
        except Exception:  # noqa: BLE001 (closed at the end)
            return

    def finish(self) -> dict[str, Any]:
        self.sender.join()
        time.sleep(1.0)  # the last answers
        self.ws.close()
        lat = self.latencies_ms or [float("nan")]
        return {"sent": len(self.sent), "processed": len(self.latencies_ms), "dropped": self.dropped,
                "sent_fps": round(len(self.sent) / self.seconds, 1),
                "processed_fps": round(len(self.latencies_ms) / self.seconds, 1),
                "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1)}


def run_streams(url: str, frames: list[bytes], n: int, fps: float, seconds: float) -> list[dict[str, Any]]:
    clients = [StreamClient(url, frames, fps, seconds) for _ in range(n)]
    for c in clients:
        c.start()
    return [c.finish() for c in clients]


def main(args: argparse.Namespace) -> int:
    frames = video_frames(Path(args.video or VIDEO), 150)
    server = ServerProcess() if not args.url else None
    url = server.url if server else args.url.rstrip("/")
    report: dict[str, Any] = {"video": Path(args.video or VIDEO).name, "single": {}, "capacity": []}
    try:
        run_streams(url, frames, 1, 10, 3)  # warm-up
        for fps in (args.fps, 0):
            row = run_streams(url, frames, 1, fps, args.seconds)[0]
            report["single"]["as fast as possible" if fps == 0 else f"{fps:g} fps"] = row
            print(f"1 stream at {'max' if fps == 0 else fps} fps: {json.dumps(row)}", flush=True)
        for n in range(1, args.max_streams + 1):
            rows = run_streams(url, frames, n, args.camera_fps, args.seconds)
            ok = all(r["p95_ms"] <= args.p95_ms and r["processed"] >= 0.9 * r["sent"] for r in rows)
            report["capacity"].append({"streams": n, "ok": ok, "per_stream": rows})
            print(f"{n} streams at {args.camera_fps:g} fps: {'OK' if ok else 'over'} "
                  f"processed fps {[r['processed_fps'] for r in rows]}, p95 {[r['p95_ms'] for r in rows]}", flush=True)
            if not ok:
                break
    finally:
        if server:
            server.stop()
    report["streams_sustained"] = max([c["streams"] for c in report["capacity"] if c["ok"]], default=0)
    print(f"streams sustained at {args.camera_fps:g} fps with p95 <= {args.p95_ms:g} ms: {report['streams_sustained']}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0
