"""The dynamic batcher alone (no models): cross-caller batching, priorities, the queue bound."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from app.core.errors import QueueFull
from app.core.metrics import Metrics
from app.pipeline.batcher import PRIORITY_BACKGROUND, DynamicBatcher
from app.pipeline.compute_gate import ComputeGate

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


def test_fewest_crops_left_go_first() -> None:
    """A 2-crop request arriving behind a 6-crop frame is served in the next pass, not after all 6."""
    async def main() -> None:
        rec = Recorder()
        b = DynamicBatcher(rec, max_batch=2, max_wait_ms=0, queue_limit=8)
        await b.start()
        rec.gate.clear()
        first = asyncio.create_task(b.submit(crops(0)))
        await asyncio.sleep(0.05)
        big = asyncio.create_task(b.submit(crops(1, 1, 1, 1, 1, 1)))
        await asyncio.sleep(0.01)
        small = asyncio.create_task(b.submit(crops(2, 2)))
        await asyncio.sleep(0.01)
        rec.gate.set()
        await asyncio.gather(first, big, small)
        await b.stop()
        assert rec.batches == [[0], [2, 2], [1, 1], [1, 1], [1, 1]], rec.batches

    asyncio.run(main())


def test_compute_gate_admits_the_lowest_key_first() -> None:
    """One slot: while it is held, waiters queue; they are admitted by (priority, recent compute), not by arrival."""
    gate = ComputeGate(1)
    order: list[str] = []
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with gate.slot((0, 0)):
            held.set()
            release.wait(5)

    def waiter(name: str, key: tuple[int, int]) -> None:
        with gate.slot(key):
            order.append(name)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    held.wait(5)
    for name, key in (("background", (10, 0.1)), ("crowded frame", (0, 4.0)), ("small request", (0, 0.8)),
                      ("new client", (0, 0.0))):
        threads.append(threading.Thread(target=waiter, args=(name, key)))
        threads[-1].start()
        while gate.waiting() < len(threads) - 1:
            time.sleep(0.001)
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["new client", "small request", "crowded frame", "background"]


def test_client_with_recent_compute_waits_for_a_new_one() -> None:
    """With a gate, a stream that has had compute lately yields the next pass to a new request, even a bigger one."""
    async def main() -> None:
        rec, gate = Recorder(), ComputeGate(1)
        b = DynamicBatcher(rec, max_batch=2, max_wait_ms=0, queue_limit=8, gate=gate)
        await b.start()
        stream = "stream"
        gate.ledger.charge(stream, 0.5)
        rec.gate.clear()
        first = asyncio.create_task(b.submit(crops(0)))
        await asyncio.sleep(0.05)
        frame = asyncio.create_task(b.submit(crops(1, 1), client=stream))
        await asyncio.sleep(0.01)
        request = asyncio.create_task(b.submit(crops(2, 2, 2, 2)))
        await asyncio.sleep(0.01)
        rec.gate.set()
        await asyncio.gather(first, frame, request)
        await b.stop()
        assert rec.batches == [[0], [2, 2], [2, 2], [1, 1]], rec.batches
        assert gate.ledger.recent(stream) > 0.4

    asyncio.run(main())
