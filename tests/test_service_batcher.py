"""The dynamic batcher alone (no models): cross-caller batching, priorities, the queue bound."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from app.batcher import PRIORITY_BACKGROUND, DynamicBatcher
from app.errors import QueueFull
from app.metrics import Metrics

pytestmark = pytest.mark.unit


class Recorder:
    """forward(): heatmap = crop value, records each batch's crop values; can be held back by a gate."""

    def __init__(self) -> None:
        self.batches: list[list[float]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.gate.wait(5)
        self.batches.append([float(c[0, 0, 0]) for c in batch])
        time.sleep(0.01)
        return batch[:, :1].copy()


def crops(*values: float) -> np.ndarray:
    return np.stack([np.full((3, 4, 4), v, np.float32) for v in values])


def test_callers_share_batches_and_get_their_own_results() -> None:
    async def main() -> None:
        rec, metrics = Recorder(), Metrics()
        b = DynamicBatcher(rec, max_batch=8, max_wait_ms=30, queue_limit=8, metrics=metrics)
        await b.start()
        outs = await asyncio.gather(*(b.submit(crops(i, i + 0.5)) for i in range(4)))
        await b.stop()
        for i, out in enumerate(outs):
            assert out.heatmaps[:, 0, 0, 0].tolist() == [i, i + 0.5]
        assert rec.batches and max(len(x) for x in rec.batches) == 8
        assert outs[0].batch_sizes == [8]
        assert "lgm_pose_batch_size_count 1.0" in metrics.render()[0].decode()

    asyncio.run(main())


def test_priority_and_queue_limit() -> None:
    async def main() -> None:
        rec = Recorder()
        b = DynamicBatcher(rec, max_batch=2, max_wait_ms=0, queue_limit=3)
        await b.start()
        rec.gate.clear()  # the first forward blocks until released: everything else queues
        first = asyncio.create_task(b.submit(crops(0)))
        await asyncio.sleep(0.05)
        background = asyncio.create_task(b.submit(crops(9, 9), priority=PRIORITY_BACKGROUND))
        live = [asyncio.create_task(b.submit(crops(v))) for v in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await b.submit(crops(3))  # live priority: the running one + 2 queued = the limit
        rec.gate.set()
        await asyncio.gather(first, background, *live)
        await b.stop()
        assert rec.batches[1] == [1, 2], rec.batches  # live crops go before the older background ones
        assert rec.batches[2] == [9, 9]

    asyncio.run(main())
