"""Dynamic batcher: person crops from all concurrent callers, gathered into one pose forward pass.

Callers (`submit`) live on the event loop; the forward pass runs in ONE dedicated worker thread, so the loop
never blocks and the model is never entered concurrently. A batch is cut when it holds `max_batch` crops or
when its oldest crop has waited `max_wait_ms`. Crops are taken by priority (lower number first: 0 = live
HTTP/WebSocket traffic, higher = background work such as evaluation) and, within a priority, from the waiting
submission (one request or stream frame) whose client has had the least compute lately (app/pipeline/compute_gate.py;
without a gate: the one with the fewest crops left): a 2-person request is not held behind the 40 crops of a
crowded stream frame. On CPU, where a batch costs the sum of its crops, small batches keep the wait for the
pass in progress short; the pass itself waits for its turn at the compute gate.
Each priority admits at most `queue_limit` pending submissions; beyond that `submit` raises QueueFull.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from app.core.errors import QueueFull
from app.core.metrics import Metrics
from app.pipeline.compute_gate import ComputeGate

log = logging.getLogger("lgm_pose.batcher")

PRIORITY_LIVE = 0
PRIORITY_BACKGROUND = 10


@dataclass
class BatchOutput:
    """What one submission gets back: heatmaps in submission order and how they were computed."""

    heatmaps: np.ndarray  # (n, K, h, w) float32
    batch_sizes: list[int] = field(default_factory=list)  # size of each forward pass that served these crops
    queue_wait_s: float = 0.0  # longest wait of one of its crops before its forward pass started
    forward_s: float = 0.0  # total time of the forward passes that served it
    per_crop_s: float = 0.0  # its share: mean over its crops of (forward time / batch size)


@dataclass
class _Item:
    crop: np.ndarray
    future: asyncio.Future
    enqueued: float


@dataclass(eq=False)
class _Submission:
    items: deque[_Item]
    client: Hashable


class DynamicBatcher:
    """Gathers (3, H, W) float32 crops into batches for `forward((B, 3, H, W)) -> (B, K, h, w)`."""

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], *, max_batch: int, max_wait_ms: float,
                 queue_limit: int, metrics: Metrics | None = None, gate: ComputeGate | None = None) -> None:
        self.forward = forward
        self.gate = gate
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_limit = queue_limit
        self.metrics = metrics
        self._queues: dict[int, list[_Submission]] = {}  # priority -> waiting submissions (their crops left)
        self._pending: dict[int, int] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pose-forward")
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.forwards = 0

    # lifecycle -------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the batching task on the running loop (idempotent)."""
        if self._task is None:
            self._arrived = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pose-batcher")

    async def stop(self) -> None:
        """Cancel the batching task, fail what is still queued, and release the worker thread."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for queue in self._queues.values():
            for item in (it for submission in queue for it in submission.items):
                if not item.future.done():
                    item.future.set_exception(RuntimeError("batcher stopped"))
            queue.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # callers ---------------------------------------------------------------------------------------------------
    def pending(self, priority: int = PRIORITY_LIVE) -> int:
        """Submissions of this priority waiting for (or inside) a forward pass."""
        return self._pending.get(priority, 0)

    def depth(self) -> int:
        """Crops waiting for a forward pass, all priorities."""
        return sum(len(sub.items) for q in self._queues.values() for sub in q)

    async def submit(self, crops: np.ndarray, priority: int = PRIORITY_LIVE,
                     client: Hashable | None = None) -> BatchOutput:
        """Queue (n, 3, H, W) crops and wait for their heatmaps; raises QueueFull when the priority is full.
        `client` (a stream, a request) is charged for their compute; default: this submission alone."""
        if self._task is None or self._arrived is None:
            raise RuntimeError("batcher not started")
        if len(crops) == 0:
            return BatchOutput(np.zeros((0,), dtype=np.float32))
        if self.pending(priority) >= self.queue_limit:
            raise QueueFull(f"pose queue full ({self.queue_limit} pending submissions at priority {priority})")
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        items = [_Item(np.ascontiguousarray(c, dtype=np.float32), loop.create_future(), now) for c in crops]
        self._pending[priority] = self.pending(priority) + 1
        try:
            self._queues.setdefault(priority, []).append(_Submission(deque(items), client or object()))
            self._update_depth()
            self._arrived.set()
            results = await asyncio.gather(*(it.future for it in items))
        finally:
            self._pending[priority] -= 1
            for it in items:  # a cancelled caller leaves no work behind
                if not it.future.done():
                    it.future.cancel()
        heatmaps = np.stack([r[0] for r in results])
        runs = {r[3]: (r[1], r[2]) for r in results}  # forward id -> (batch size, forward seconds)
        return BatchOutput(heatmaps=heatmaps, batch_sizes=[runs[k][0] for k in sorted(runs)],
                           queue_wait_s=max(r[4] for r in results), forward_s=sum(v[1] for v in runs.values()),
                           per_crop_s=float(np.mean([r[2] / r[1] for r in results])))

    # the loop --------------------------------------------------------------------------------------------------
    def _update_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.depth())

    def _take(self) -> tuple[list[_Item], list[Hashable], tuple[int, float]]:
        """Up to `max_batch` crops, highest priority first, then from the submission whose client had the least
        compute lately (fewest crops left on a tie); their clients and the batch's key at the compute gate."""
        recent = self.gate.ledger.recent if self.gate is not None else (lambda client: 0.0)
        batch: list[_Item] = []
        clients: list[Hashable] = []
        key: tuple[int, float] | None = None
        for priority in sorted(self._queues):
            queue = self._queues[priority]
            while queue and len(batch) < self.max_batch:
                submission = min(queue, key=lambda sub: (recent(sub.client), len(sub.items)))
                key = key or (priority, recent(submission.client))
                item = submission.items.popleft()
                if not submission.items:
                    queue.remove(submission)
                if not item.future.done():  # skip crops of cancelled callers
                    batch.append(item)
                    clients.append(submission.client)
        self._update_depth()
        return batch, clients, key or (0, 0.0)

    def _run_forward(self, crops: list[np.ndarray], clients: list[Hashable],
                     key: tuple[int, float]) -> tuple[np.ndarray, float, float]:
        """Heatmaps, start and duration of the forward pass, run in its turn at the compute gate; each crop's
        client is charged its share of the pass."""
        batch = np.stack(crops)
        with self.gate.slot(key) if self.gate is not None else nullcontext():
            started = time.perf_counter()
            heatmaps = np.asarray(self.forward(batch), dtype=np.float32)
            elapsed = time.perf_counter() - started
        if self.gate is not None:
            for client in clients:
                self.gate.ledger.charge(client, elapsed / len(clients))
        return heatmaps, started, elapsed

    async def _run(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            size = self.depth()
            if size == 0:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            oldest = min(sub.items[0].enqueued for q in self._queues.values() for sub in q)
            delay = oldest + self.max_wait_s - time.perf_counter()
            if size < self.max_batch and delay > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), delay)
                except TimeoutError:
                    pass
                continue
            batch, clients, key = self._take()
            if not batch:
                continue
            try:
                heatmaps, started, elapsed = await loop.run_in_executor(self._executor, self._run_forward,
                                                                        [it.crop for it in batch], clients, key)
            except Exception as exc:  # a failed forward fails its callers, never the loop
                log.exception("pose forward pass of %d crops failed", len(batch))
                for it in batch:
                    if not it.future.done():
                        it.future.set_exception(exc)
                continue
            self.forwards += 1
            if self.metrics is not None:
                self.metrics.batch_size.observe(len(batch))
            for it, hm in zip(batch, heatmaps, strict=True):
                if not it.future.done():
                    it.future.set_result((hm, len(batch), elapsed, self.forwards, started - it.enqueued))
