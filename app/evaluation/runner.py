"""How an evaluation job computes on the live service: its runner (the shared batcher at background priority)
and the gate that holds it back while live requests are served."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable

import numpy as np

from app.core.errors import QueueFull
from app.pipeline.batcher import PRIORITY_BACKGROUND, PRIORITY_LIVE, DynamicBatcher
from app.pipeline.compute_gate import EVAL_CLIENT
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

