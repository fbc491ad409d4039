"""The service's request pipeline: bytes -> image -> person boxes -> the one top-down path -> poses.

The top-down steps are `model.inference.topdown.TopDown`'s (crop, flip, decode, scoring, OKS-NMS); only the
forward pass differs from evaluation: it is the shared batcher. Each stage is timed once (app.pipeline.timing);
the answer is one `PoseResult` (app.pipeline.results). Decode, cropping and post-processing run in
worker threads (asyncio.to_thread), detection in its own single thread (Ultralytics is not thread-safe), the
pose forward in the batcher's thread: the event loop only awaits. HTTP requests and WebSocket frames enter
through `estimate_bytes`, whose admission control lets at most `queue_limit` of them inside
decode+detect+pose at once (beyond: QueueFull, 503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np

from app.core.errors import QueueFull
from app.core.metrics import Metrics
from app.core.settings import Settings
from app.pipeline.batcher import PRIORITY_BACKGROUND, PRIORITY_LIVE, DynamicBatcher
from app.pipeline.compute_gate import EVAL_CLIENT, ComputeGate
from app.pipeline.decode import decode_probed, probe
from app.pipeline.results import PoseResult
from app.pipeline.timing import StageTimer
from model.inference.detector import Detector
from model.inference.topdown import TopDown


class PixelBudget:
    """Decoded pixels the pipeline holds at once; a request that would pass the budget gets 503 (QueueFull).

    Used from the event loop only (no lock). One image alone is always admitted when nothing else is held.
    """

    def __init__(self, budget: int) -> None:
        self.budget, self.held = budget, 0

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        if self.held and self.held + pixels > self.budget:
            raise QueueFull(f"service busy: {self.held} decoded pixels in flight (budget {self.budget})")
        self.held += pixels
        try:
            yield
        finally:
            self.held -= pixels


@dataclass
class PoseParams:
    """Per-request options; `boxes` (N, 4) x1y1x2y2 skip detection and are returned exactly.

    `kpt_thr` is the display threshold (joints drawn by /pose/render); scores follow the one scoring rule.
    """

    det_conf: float
    kpt_thr: float
    max_persons: int
    boxes: np.ndarray | None = None
    box_scores: np.ndarray | None = None


class PosePipeline:
    """Owns the detector thread and the admission counter; shares the batcher with other callers."""

    def __init__(self, settings: Settings, topdown: TopDown, detector: Detector, batcher: DynamicBatcher,
                 metrics: Metrics, gate: ComputeGate) -> None:
        self.settings = settings
        self.topdown = topdown
        self.detector = detector
        self.batcher = batcher
        self.metrics = metrics
        self.gate = gate
        self._detect_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect")
        self._admitted = 0
        self._pixels = PixelBudget(settings.max_pixels_in_flight)

    def close(self) -> None:
        self._detect_thread.shutdown(wait=False, cancel_futures=True)

    @property
    def requests_in_progress(self) -> int:
        """Live POST /pose requests admitted and not yet answered."""
        return self._admitted

    def _detect(self, image: np.ndarray, conf: float, max_persons: int, priority: int,
                client: Hashable) -> tuple[np.ndarray, np.ndarray]:
        """Detection on the detector's thread, in the client's turn at the compute gate."""
        with self.gate.run_for(priority, client):
            return self.detector.detect(image, conf, max_persons)

    def detect_blocking(self, image: np.ndarray, conf: float, max_persons: int) -> tuple[np.ndarray, np.ndarray]:
        """Background (evaluation) detection from another thread, on the detector's own thread (it is not
        thread-safe)."""
        return self._detect_thread.submit(self._detect, image, conf, max_persons, PRIORITY_BACKGROUND,
                                          EVAL_CLIENT).result()

    async def estimate_bytes(self, data: bytes, params: PoseParams, priority: int = PRIORITY_LIVE,
                             max_bytes: int | None = None,
                             client: Hashable | None = None) -> tuple[np.ndarray, PoseResult]:
        """Decode an image (HTTP body or stream frame) and estimate its poses; returns the image too.

        The one entry of live traffic: admission (503 beyond `queue_limit`), the decode limits, the pipeline.
        `client` shares compute fairly with others (a stream passes itself; default: this request alone).
        """
        if self._admitted >= self.settings.queue_limit:
            raise QueueFull(f"service busy: {self._admitted} requests in progress (limit {self.settings.queue_limit})")
        self._admitted += 1
        try:
            s, timer = self.settings, StageTimer(self.metrics)
            with ExitStack() as held:
                with timer.stage("decode"):
                    fmt, width, height = await asyncio.to_thread(probe, data, max_bytes or s.max_upload_bytes,
                                                                 s.max_pixels)  # the header only
                    held.enter_context(self._pixels.hold(width * height))  # memory admission: pixels in flight
                    image = await asyncio.to_thread(decode_probed, data, fmt)
                result = await self.estimate_image(image, params, priority, client=client, timer=timer)
            return image, result
        finally:
            self._admitted -= 1

    async def estimate_image(self, image: np.ndarray, params: PoseParams, priority: int = PRIORITY_LIVE,
                             client: Hashable | None = None, timer: StageTimer | None = None) -> PoseResult:
        """Poses of a decoded BGR image. Client boxes skip the detector; `priority` orders the shared batcher."""
        timer = timer or StageTimer(self.metrics)
        client = client if client is not None else object()
        with timer.stage("detect"):
            if params.boxes is None:
                boxes, box_scores = await asyncio.get_running_loop().run_in_executor(
                    self._detect_thread, self._detect, image, params.det_conf, params.max_persons, priority, client)
            else:
                boxes = params.boxes[: params.max_persons]
                box_scores = (params.box_scores[: len(boxes)] if params.box_scores is not None
                              else np.ones(len(boxes)))
        with timer.stage("prepare"):
            prepared = await asyncio.to_thread(self.topdown.prepare, image, boxes)  # off the detector thread
        batch = await self.batcher.submit(prepared.inputs, priority, client)
        timer.record("queue_wait", batch.queue_wait_s)
        timer.record("pose", batch.forward_s)
        timer.note("pose_per_person", batch.per_crop_s * (2 if prepared.flip else 1))
        h, w = image.shape[:2]
        with timer.stage("postprocess"):
            poses = await asyncio.to_thread(self.topdown.decode, prepared, batch.heatmaps, boxes, box_scores, (w, h))
        self.metrics.persons_per_image.observe(len(poses))
        return PoseResult(width=w, height=h, poses=poses, timing_ms=timer.finish(), batch_sizes=batch.batch_sizes)
