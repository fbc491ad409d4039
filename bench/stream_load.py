"""`lgm-pose bench stream`: WS /ws/pose on real street footage, per stream and for several camera streams at once.

Per pose source (`--sources`), one stream as fast as it can beside YOLO11n-pose alone on the same frames
(in-process, the service detector's runtime), alternating over `--runs`, medians. A client sends the frames of
`street_pedestrians.mp4` (640x360, several people; as fast as it is served: the next frame when the last one's
answer came), each announced by its frame id, and reads the answers on
another thread: frames/s processed, latency from sending a frame to its answer (p50/p95), frames dropped by the
server (latest frame wins). Then one stream of the default source at `--fps` (30), and capacity: 1, 2, 3...
streams at `--camera-fps` (10) each until a stream's p95 passes `--p95-ms` (200) or it processes under 90% of
its frames; the per-stream frame rates show how fairly they are served. Without `--url` a fresh `lgm-pose serve`
is started with the environment's settings.
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
    """One camera: frames at `fps` for `seconds`, answers timed; `fps` 0: as fast as it is served (each frame sent
    when the last one's answer came: a closed loop, so the client never floods a small box's cores)."""

    def __init__(self, url: str, frames: list[bytes], fps: float, seconds: float, source: str | None = None) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url.replace("http", "ws", 1) + "/ws/pose", max_size=None, compression=None)
        json.loads(self.ws.recv(timeout=30))  # hello
        if source:  # the stream's pose source, acknowledged before the first frame
            self.ws.send(json.dumps({"pose_source": source}))
            answer = json.loads(self.ws.recv(timeout=30))
            if answer.get("type") != "config":
                raise RuntimeError(f"pose_source {source!r} refused: {answer}")
        self.frames, self.fps, self.seconds = frames, fps, seconds
        self.sent: dict[int, float] = {}
        self.latencies_ms: list[float] = []
        self.dropped = 0
        self.answered = threading.Event()
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
            else:
                self.answered.wait(30)
                self.answered.clear()

    def _read(self) -> None:
        try:
            while True:
                msg = json.loads(self.ws.recv())
                if msg.get("type") in ("pose", "error"):
                    self.answered.set()
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


def run_streams(url: str, frames: list[bytes], n: int, fps: float, seconds: float,
                source: str | None = None) -> list[dict[str, Any]]:
    clients = [StreamClient(url, frames, fps, seconds, source) for _ in range(n)]
    for c in clients:
        c.start()
    return [c.finish() for c in clients]


def yolo_alone(frames: list[bytes], seconds: float) -> dict[str, Any]:
    """YOLO11n-pose alone on the same frames, in-process in the service detector's runtime and settings: decode
    each JPEG and detect (boxes and keypoints), one after another, for `seconds`."""
    import cv2

    from app.core.settings import Settings
    from model.inference.loader import build_detector

    s = Settings()
    detector = build_detector(s.resolved_detector_weights(), "cpu", s.detector_imgsz, backend="onnxruntime",
                              threads=s.torch_threads)
    decode = [np.frombuffer(f, np.uint8) for f in frames]
    detector.detect_with_keypoints(cv2.imdecode(decode[0], cv2.IMREAD_COLOR), s.detector_conf, s.max_persons)
    latencies, start, i = [], time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        detector.detect_with_keypoints(cv2.imdecode(decode[i % len(decode)], cv2.IMREAD_COLOR), s.detector_conf,
                                       s.max_persons)
        latencies.append((time.perf_counter() - t) * 1000.0)
        i += 1
    return {"processed": i, "processed_fps": round(i / (time.perf_counter() - start), 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p95_ms": round(float(np.percentile(latencies, 95)), 1)}


def main(args: argparse.Namespace) -> int:
    frames = video_frames(Path(args.video or VIDEO), 150)
    server = ServerProcess() if not args.url else None
    url = server.url if server else args.url.rstrip("/")
    report: dict[str, Any] = {"video": Path(args.video or VIDEO).name, "single": {}, "capacity": []}
    try:
        run_streams(url, frames, 1, 10, 3)  # warm-up
        for run in range(args.runs):  # alternating: each source as fast as it goes, then YOLO11n-pose alone
            for source in args.sources:
                row = run_streams(url, frames, 1, 0, args.seconds, source)[0]
                report["single"].setdefault(f"source {source}, as fast as possible", []).append(row)
                print(f"run {run + 1}: 1 stream, source {source}, max fps: {json.dumps(row)}", flush=True)
            row = yolo_alone(frames, args.seconds)
            report["single"].setdefault("YOLO11n-pose alone (in-process, ONNX Runtime)", []).append(row)
            print(f"run {run + 1}: YOLO11n-pose alone: {json.dumps(row)}", flush=True)
        report["single_median_fps"] = {k: float(np.median([r["processed_fps"] for r in rows]))
                                       for k, rows in report["single"].items()}
        print("median processed fps:", json.dumps(report["single_median_fps"]), flush=True)
        row = run_streams(url, frames, 1, args.fps, args.seconds)[0]
        report["single"][f"default source, {args.fps:g} fps"] = [row]
        print(f"1 stream at {args.fps} fps (default source): {json.dumps(row)}", flush=True)
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
