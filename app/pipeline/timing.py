"""Timed stages, as Ultralytics' `ops.Profile`: each stage of one image is timed once, and that one number goes
into the answer's `timing_ms` and the Prometheus histogram `lgm_pose_stage_duration_seconds{stage, source}`
(`source`: the pose source that answered; `detector` has no prepare, queue_wait or pose stage).

Stages, in order: decode (header check and pixel decode), detect (the person detector, or the client's boxes),
prepare (the crops of `TopDown.prepare`), queue_wait and pose (from the shared batcher), postprocess
(`TopDown.decode`: flip average, DARK, scoring, OKS-NMS). `timing_ms` also carries `pose_per_person` and `total`.
A stage that raises is not recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from app.core.metrics import Metrics


class StageTimer:
    """The stage times of one image (`timing_ms`, milliseconds), each also observed in `metrics`."""

    def __init__(self, metrics: Metrics | None = None, source: str = "lgm") -> None:
        self.metrics, self.source = metrics, source
        self.start = time.perf_counter()
        self.timing_ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage `name` (recorded when it completes)."""
        t = time.perf_counter()
        yield
        self.record(name, time.perf_counter() - t)

    def record(self, name: str, seconds: float) -> None:
        """A stage measured elsewhere (the batcher's queue wait and forward time)."""
        self.note(name, seconds)
        if self.metrics is not None:
            self.metrics.stage_duration.labels(stage=name, source=self.source).observe(seconds)

    def note(self, name: str, seconds: float) -> None:
        """A figure for `timing_ms` only (not a stage of the histogram)."""
        self.timing_ms[name] = round(seconds * 1000.0, 3)

    def finish(self) -> dict[str, float]:
        """`timing_ms` with `total`: from the timer's start until now."""
        self.note("total", time.perf_counter() - self.start)
        return self.timing_ms
