"""How an evaluation job computes on the live service: its runner (the shared batcher at background priority),
the gate that holds it back while live requests are served, and the evaluation of a pose source through the
service's own pipeline (`evaluate_served_source`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import QueueFull
from app.evaluation.spec import EvalSpec
from app.pipeline.batcher import PRIORITY_BACKGROUND, PRIORITY_LIVE, DynamicBatcher
from app.pipeline.compute_gate import EVAL_CLIENT
from app.pipeline.pose_pipeline import PoseParams, PosePipeline
from app.pipeline.results import PoseResult
from app.pipeline.timing import StageTimer
from app.state import ServiceState
from model.data.meta import PoseMeta


class JobCancelled(Exception):
    """Raised inside the worker when the job's cancel flag is seen between two forward passes."""


class LiveGate:
    """Holds background work back while live requests are being served (at most `max_yield_s` per wait)."""

    def __init__(self, busy: Callable[[], bool], grace_s: float = 0.25, max_yield_s: float = 3.0) -> None:
        self.busy, self.grace_s, self.max_yield_s = busy, grace_s, max_yield_s
        self._last_busy = self.yielded_s = 0.0

    def wait(self, cancel: threading.Event) -> None:
        start = now = time.perf_counter()
        while now - start < self.max_yield_s and not cancel.is_set():
            if self.busy():
                self._last_busy = now
            elif now - self._last_busy >= self.grace_s:
                break
            time.sleep(0.01)
            now = time.perf_counter()
        self.yielded_s += time.perf_counter() - start


class BatcherRunner:
    """Eval runner: numpy (B, 3, H, W) -> heatmaps (B, K, h, w) through the service's shared batcher.

    Called from a worker thread; each chunk of at most `max_crops` crops is submitted with
    asyncio.run_coroutine_threadsafe onto the server loop at `priority` and waited for.
    """

    name = "batcher"

    def __init__(self, batcher: DynamicBatcher, loop: asyncio.AbstractEventLoop, meta: PoseMeta, gate: LiveGate,
                 cancel: threading.Event, max_crops: int = 4, priority: int = PRIORITY_BACKGROUND) -> None:
        self.batcher, self.loop, self.meta = batcher, loop, meta
        self.gate, self.cancel, self.max_crops, self.priority = gate, cancel, max(1, max_crops), priority
        self.crops = self.forwards = 0

    def _submit(self, chunk: np.ndarray) -> np.ndarray:
        while True:
            if self.loop.is_closed() or not self.loop.is_running():
                raise RuntimeError("service is shutting down")
            future = asyncio.run_coroutine_threadsafe(self.batcher.submit(chunk, self.priority, EVAL_CLIENT), self.loop)
            try:
                while True:
                    try:
                        return future.result(timeout=0.5).heatmaps
                    except concurrent.futures.TimeoutError:
                        if self.loop.is_closed() or not self.loop.is_running():
                            future.cancel()
                            raise RuntimeError("service is shutting down") from None
            except QueueFull:
                time.sleep(0.05)  # background queue full: retry shortly

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(batch), self.max_crops):
            if self.cancel.is_set():
                raise JobCancelled()
            self.gate.wait(self.cancel)
            chunk = np.ascontiguousarray(batch[start:start + self.max_crops], dtype=np.float32)
            out.append(np.asarray(self._submit(chunk), dtype=np.float32))
            self.crops, self.forwards = self.crops + len(chunk), self.forwards + 1
        return np.concatenate(out)


def live_busy(service: ServiceState) -> bool:
    """True while live work is in flight: admitted POST /pose requests or live crops in the batcher."""
    pipeline, batcher = service.pipeline, service.batcher
    admitted = pipeline.requests_in_progress if pipeline is not None else 0
    return bool(admitted) or (batcher is not None and batcher.pending(PRIORITY_LIVE) > 0)


def evaluate_served_source(service: ServiceState, loop: asyncio.AbstractEventLoop, spec: EvalSpec, gate: LiveGate,
                           cancel: threading.Event, progress: Callable[[int, int], None],
                           results_path: Path) -> dict[str, Any]:
    """COCO AP of `spec.source` computed by the service's pipeline itself (`PosePipeline.estimate_image` at
    background priority: the detector, the source's keypoints, the one scoring rule), image by image, as a client
    of `POST /pose?format=coco` would get them. Called from the job's worker thread."""
    from model.data.images import image_path, read_image
    from model.eval.coco import load_coco, score_results, write_results

    pipeline, s = service.ready_pipeline(), service.settings
    coco = load_coco(spec.ann_file)
    ids = sorted(coco.getImgIds())[: spec.max_images]
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    start = time.perf_counter()
    for n, image_id in enumerate(ids, 1):
        if cancel.is_set():
            raise JobCancelled()
        name = coco.imgs[image_id]["file_name"]
        try:
            image = read_image(image_path(spec.image_dir, name))
        except (ValueError, OSError):
            skipped.append(name)
            continue
        gate.wait(cancel)
        params = PoseParams(det_conf=spec.det_conf, kpt_thr=s.kpt_score_threshold, max_persons=s.max_persons,
                            pose_source=spec.source)
        records += _estimate(pipeline, loop, image, params).to_coco(image_id)
        progress(n, len(ids))
    seconds = time.perf_counter() - start
    write_results(results_path, records)
    scored = score_results(coco, records, ids)
    return {"dataset": "coco", "source": spec.source, "boxes": "detector", "flip": pipeline.topdown.flip,
            "table": scored["stats"], "summary": scored["summary"], "cancelled": False,
            "counts": {"images": len(ids), "results_after_nms": len(records), "skipped_images": len(skipped)},
            "skipped_images": skipped, "throughput": {"seconds": round(seconds, 3)}}


def _estimate(pipeline: PosePipeline, loop: asyncio.AbstractEventLoop, image: np.ndarray,
              params: PoseParams) -> PoseResult:
    """One image through the live pipeline from a worker thread (background priority, not in the live metrics)."""
    while True:
        if loop.is_closed() or not loop.is_running():
            raise RuntimeError("service is shutting down")
        coro = pipeline.estimate_image(image, params, PRIORITY_BACKGROUND, EVAL_CLIENT,
                                       StageTimer(None, params.pose_source))
        try:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()
        except QueueFull:
            time.sleep(0.05)  # background queue full: retry shortly
