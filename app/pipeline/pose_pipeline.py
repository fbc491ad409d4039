"""The service's request pipeline: bytes -> image -> person boxes (+ the detector's keypoints) -> poses of a source.

The pose source (app.pipeline.sources) decides what runs after detection: `detector` scores YOLO's own keypoints
(no crops, no batcher); `lgm` and `fused` run the one top-down path, `model.inference.topdown.TopDown`'s (crop,
flip, decode, scoring, OKS-NMS), whose forward pass is the shared batcher; `fused` then combines both estimates.
Each stage is timed once (app.pipeline.timing); the answer is one `PoseResult` (app.pipeline.results). Decode,
cropping and post-processing run in worker threads (asyncio.to_thread), detection in its own single thread
(Ultralytics is not thread-safe), the pose forward in the batcher's thread: the event loop only awaits. HTTP
requests and WebSocket frames enter through `estimate_bytes`, whose admission control lets at most `queue_limit`
of them inside decode+detect+pose at once (beyond: QueueFull, 503). Their memory is budgeted (`PixelBudget`): the
decoded image from its header on, then its person crops and heatmaps (in decoded-pixel units) from detection until
the keypoints are read. Decoding runs in its own threads, in the client's turn at the fair compute gate and charged
to it like a network call; a caller that is cancelled (an HTTP client that left) leaves no decode behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from app.core.errors import QueueFull, UnprocessableImage
from app.core.metrics import Metrics
from app.core.settings import Settings
from app.pipeline.batcher import PRIORITY_BACKGROUND, PRIORITY_LIVE, DynamicBatcher
from app.pipeline.compute_gate import EVAL_CLIENT, ComputeGate
from app.pipeline.decode import decode_probed, probe
from app.pipeline.results import PoseResult
from app.pipeline.sources import SOURCES, detector_poses, fused_poses, require_fusion, resolve
from app.pipeline.timing import StageTimer
from model.inference.detector import Detector
from model.inference.fusion import Fusion
from model.inference.topdown import Poses, PreparedCrops, TopDown

log = logging.getLogger("lgm_pose.pipeline")
TRIM_EVERY_S = 2.0


def _malloc_trim() -> None:
    """glibc: give the free pages of every malloc arena back to the OS (no-op elsewhere)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PixelBudget:
    """Decoded pixels the pipeline holds at once; a request that would pass the budget gets 503 (QueueFull).

    Used from the event loop only (no lock). One request alone is always admitted when nothing else is held: `own`
    is what the caller already holds (its image, when it asks for its crops).
    """

    def __init__(self, budget: int) -> None:
        self.budget, self.held = budget, 0

    @contextmanager
    def hold(self, pixels: int, own: int = 0) -> Iterator[None]:
        if self.held > own and self.held + pixels > self.budget:
            raise QueueFull(f"service busy: {self.held} decoded pixels in flight (budget {self.budget})")
        self.held += pixels
        try:
            yield
        finally:
            self.held -= pixels


def usable_boxes(boxes: np.ndarray) -> np.ndarray:
    """Mask of x1y1x2y2 boxes that are finite and at least a pixel wide and high (a crop of them has a size)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.isfinite(b).all(1) & (b[:, 2] - b[:, 0] >= 1.0) & (b[:, 3] - b[:, 1] >= 1.0)


@dataclass
class PoseParams:
    """Per-request options; `boxes` (N, 4) x1y1x2y2 skip detection and are returned exactly.

    `kpt_thr` is the display threshold (joints drawn by /pose/render); scores follow the one scoring rule.
    `pose_source_given`: the client named the source (a default `detector` with boxes answers with `lgm`).
    """

    det_conf: float
    kpt_thr: float
    max_persons: int
    boxes: np.ndarray | None = None
    box_scores: np.ndarray | None = None
    pose_source: str = "lgm"
    pose_source_given: bool = True

    def source(self) -> tuple[str, str | None]:
        """The source that answers, and a note when it is not the one asked (app.pipeline.sources.resolve)."""
        return resolve(self.pose_source, self.boxes is not None, self.pose_source_given)


class PosePipeline:
    """Owns the detector thread and the admission counter; shares the batcher with other callers."""

    def __init__(self, settings: Settings, topdown: TopDown, detector: Detector, batcher: DynamicBatcher,
                 metrics: Metrics, gate: ComputeGate, fusion: Fusion | None = None) -> None:
        self.settings = settings
        self.topdown = topdown
        self.detector = detector
        self.fusion = fusion  # the served pose model's fitted rule (source `fused`); None: not available
        self.batcher = batcher
        self.metrics = metrics
        self.gate = gate
        self._detect_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect")
        # decodes wait for the compute gate here, not in the shared pool that crops and post-processing need
        self._decode_threads = ThreadPoolExecutor(max_workers=settings.cpu_workers, thread_name_prefix="decode")
        self._admitted = 0
        self._trimmed = 0.0
        self._pixels = PixelBudget(settings.max_pixels_in_flight)

    def close(self) -> None:
        self._detect_thread.shutdown(wait=False, cancel_futures=True)
        self._decode_threads.shutdown(wait=False, cancel_futures=True)

    def sources(self) -> list[str]:
        """The pose sources this pipeline serves (`fused` only with a fitted rule)."""
        return [s for s in SOURCES if s != "fused" or self.fusion is not None]

    @property
    def requests_in_progress(self) -> int:
        """Live POST /pose requests admitted and not yet answered."""
        return self._admitted

    def _detect(self, image: np.ndarray, conf: float, max_persons: int, priority: int,
                client: Hashable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detection on the detector's thread, in the client's turn at the compute gate: boxes, scores and the
        detector's own keypoints (N, K, 3)."""
        with self.gate.run_for(priority, client):
            return self.detector.detect_with_keypoints(image, conf, max_persons)

    def detect_blocking(self, image: np.ndarray, conf: float,
                        max_persons: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Background (evaluation) detection from another thread, on the detector's own thread (it is not
        thread-safe): boxes, scores and keypoints."""
        return self._detect_thread.submit(self._detect, image, conf, max_persons, PRIORITY_BACKGROUND,
                                          EVAL_CLIENT).result()

    def crop_pixels(self, persons: int) -> int:
        """Memory of the crops and heatmaps of `persons` (twice with flip test), float32, in decoded pixels (3 B)."""
        (w, h), (hw, hh) = self.topdown.codec.input_wh, self.topdown.codec.heatmap_wh
        crops = persons * (2 if self.topdown.flip else 1)
        return crops * (3 * w * h + self.topdown.dataset.num_joints * hw * hh) * 4 // 3

    def _decode(self, data: bytes, fmt: str, priority: int, client: Hashable,
                cancelled: threading.Event) -> np.ndarray | None:
        """Decode in the client's turn at the compute gate, charged to it; nothing when its caller has gone."""
        with self.gate.run_for(priority, client):
            return None if cancelled.is_set() else decode_probed(data, fmt)

    async def _decode_for(self, data: bytes, fmt: str, priority: int, client: Hashable) -> np.ndarray:
        cancelled = threading.Event()
        try:
            image = await asyncio.get_running_loop().run_in_executor(self._decode_threads, self._decode, data, fmt,
                                                                     priority, client, cancelled)
        except asyncio.CancelledError:  # a decode still waiting at the gate is skipped
            cancelled.set()
            raise
        assert image is not None
        return image

    async def estimate_bytes(self, data: bytes, params: PoseParams, priority: int = PRIORITY_LIVE,
                             max_bytes: int | None = None,
                             client: Hashable | None = None) -> tuple[np.ndarray, PoseResult]:
        """Decode an image (HTTP body or stream frame) and estimate its poses; returns the image too.

        The one entry of live traffic: admission (503 beyond `queue_limit`), the decode limits, the pipeline.
        `client` shares compute fairly with others (a stream passes itself; default: this request alone).
        """
        source, _ = params.source()  # a refused source is refused before any work
        require_fusion(source, self.fusion)
        if self._admitted >= self.settings.queue_limit:
            raise QueueFull(f"service busy: {self._admitted} requests in progress (limit {self.settings.queue_limit})")
        self._admitted += 1
        client = client if client is not None else object()
        try:
            s, timer = self.settings, StageTimer(self.metrics, source)
            with ExitStack() as held:
                with timer.stage("decode"):
                    fmt, width, height = await asyncio.to_thread(probe, data, max_bytes or s.max_upload_bytes,
                                                                 s.max_pixels)  # the header only
                    held.enter_context(self._pixels.hold(width * height))  # memory admission: pixels in flight
                    image = await self._decode_for(data, fmt, priority, client)
                try:
                    result = await self.estimate_image(image, params, priority, client=client, timer=timer,
                                                       own_pixels=width * height)
                except cv2.error:  # an image geometry OpenCV cannot take: the operator gets the trace, not the client
                    log.exception("OpenCV failed on a %s image of %dx%d", fmt, width, height)
                    raise UnprocessableImage(f"the {width}x{height} image could not be processed") from None
            return image, result
        finally:
            self._admitted -= 1
            if self._admitted == 0 and time.monotonic() - self._trimmed > TRIM_EVERY_S:
                # idle after a burst: images and crops freed in worker threads' arenas stay resident otherwise
                self._trimmed = time.monotonic()
                asyncio.get_running_loop().run_in_executor(None, _malloc_trim)

    async def estimate_image(self, image: np.ndarray, params: PoseParams, priority: int = PRIORITY_LIVE,
                             client: Hashable | None = None, timer: StageTimer | None = None,
                             own_pixels: int | None = None) -> PoseResult:
        """Poses of a decoded BGR image from the params' source. Client boxes skip the detector; `priority` orders
        the shared batcher. `own_pixels`: the image's share of the memory budget (live traffic), which its crops
        then join."""
        source, note = params.source()
        require_fusion(source, self.fusion)
        timer = timer or StageTimer(self.metrics, source)
        client = client if client is not None else object()
        with timer.stage("detect"):
            if params.boxes is None:
                boxes, box_scores, det_keypoints = await asyncio.get_running_loop().run_in_executor(
                    self._detect_thread, self._detect, image, params.det_conf, params.max_persons, priority, client)
                keep = usable_boxes(boxes)  # degenerate detections (det_conf 0) would make crops of no size
                boxes, box_scores = boxes[keep], box_scores[keep]
                det_keypoints = det_keypoints[keep] if det_keypoints is not None else None
            else:
                boxes, det_keypoints = params.boxes[: params.max_persons], None
                box_scores = (params.box_scores[: len(boxes)] if params.box_scores is not None
                              else np.ones(len(boxes)))
        h, w = image.shape[:2]
        batch_sizes: list[int] = []
        if source == "detector":  # LGM-Pose does not run: no crops, no batcher
            with timer.stage("postprocess"):
                poses = await asyncio.to_thread(detector_poses, self.topdown, boxes, box_scores, det_keypoints,
                                                (w, h))
        else:
            with ExitStack() as held:
                if own_pixels is not None:  # crops and heatmaps, until the keypoints are read
                    held.enter_context(self._pixels.hold(self.crop_pixels(len(boxes)), own=own_pixels))
                with timer.stage("prepare"):
                    prepared = await asyncio.to_thread(self.topdown.prepare, image, boxes)  # off the detector thread
                batch = await self.batcher.submit(prepared.inputs, priority, client)
                batch_sizes = batch.batch_sizes
                timer.record("queue_wait", batch.queue_wait_s)
                timer.record("pose", batch.forward_s)
                timer.note("pose_per_person", batch.per_crop_s * (2 if prepared.flip else 1))
                with timer.stage("postprocess"):
                    if source == "fused":
                        poses = await asyncio.to_thread(self._fused, prepared, batch.heatmaps, det_keypoints, boxes,
                                                        box_scores, (w, h))
                    else:
                        poses = await asyncio.to_thread(self.topdown.decode, prepared, batch.heatmaps, boxes,
                                                        box_scores, (w, h))
                del prepared, batch
        if timer.metrics is not None:
            timer.metrics.persons_per_image.labels(source=source).observe(len(poses))
        return PoseResult(width=w, height=h, poses=poses, timing_ms=timer.finish(), batch_sizes=batch_sizes,
                          source=source, source_note=note)

    def _fused(self, prepared: PreparedCrops, heatmaps: np.ndarray, det_keypoints: np.ndarray, boxes: np.ndarray,
               box_scores: np.ndarray, image_wh: tuple[int, int]) -> Poses:
        """Source `fused`: LGM-Pose's keypoints of these crops and the detector's, combined by the fitted rule."""
        assert self.fusion is not None  # require_fusion
        lgm = self.topdown.keypoints(prepared, heatmaps, image_wh)
        return fused_poses(self.topdown, self.fusion, lgm, det_keypoints, boxes, box_scores, prepared.sizes, image_wh)
