"""Fair compute: which network call (a detection or a pose forward pass) runs next, and for which client.

The detector and the pose network each run in their own thread and each would use every core. On a small CPU,
running both at once only time-slices the cores. The gate lets at most `slots` calls compute at once (1 on CPU,
2 on CUDA by default) and, when a slot frees, admits the waiting call whose client has had the least compute
lately (the ledger: seconds of network time per client, decaying with a half-life of about a second). A client
is a stream (all its frames) or one HTTP request. So one stream that asks for the most work a frame can cost
(det_conf 0, the most persons, every frame detected) cannot hold a request behind its frames: the request has
had nothing yet and goes first, while the stream still gets every moment nobody else needs. Background work
(evaluation) waits for live traffic: keys are (priority class, recent compute).
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

HALF_LIFE_S = 1.0
MAX_CLIENTS = 256  # beyond this many entries, those decayed below FORGOTTEN_S are dropped
FORGOTTEN_S = 1e-4
EVAL_CLIENT = "evaluation"  # background jobs share one account


class ComputeLedger:
    """Recent network time per client: charged after each call, halving every `half_life_s`; thread-safe."""

    def __init__(self, half_life_s: float = HALF_LIFE_S) -> None:
        self.rate = math.log(2.0) / half_life_s
        self._spent: dict[Hashable, tuple[float, float]] = {}  # client -> (seconds, when)
        self._lock = threading.Lock()

    def recent(self, client: Hashable) -> float:
        """The client's decayed compute seconds now (0 for a new client)."""
        with self._lock:
            spent, when = self._spent.get(client, (0.0, 0.0))
        return spent * math.exp(-self.rate * (time.monotonic() - when)) if spent else 0.0

    def charge(self, client: Hashable, seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            spent, when = self._spent.get(client, (0.0, now))
            self._spent[client] = (spent * math.exp(-self.rate * (now - when)) + seconds, now)
            if len(self._spent) > MAX_CLIENTS:  # forget clients whose compute has decayed to nothing
                self._spent = {c: (v, t) for c, (v, t) in self._spent.items()
                               if v * math.exp(-self.rate * (now - t)) > FORGOTTEN_S}

    def __len__(self) -> int:
        return len(self._spent)


class ComputeGate:
    """At most `slots` holders at once; waiters are admitted lowest key first (ties: first come)."""

    def __init__(self, slots: int, ledger: ComputeLedger | None = None) -> None:
        self.slots = slots
        self.ledger = ledger or ComputeLedger()
        self._free = slots
        self._cond = threading.Condition()
        self._waiting: list[tuple[tuple[int, float], int]] = []
        self._order = itertools.count()

    def key(self, priority: int, client: Hashable) -> tuple[int, float]:
        return priority, self.ledger.recent(client)

    @contextmanager
    def slot(self, key: tuple[int, float]) -> Iterator[None]:
        """Block the calling thread until it is admitted; release on exit."""
        entry = (key, next(self._order))
        with self._cond:
            heapq.heappush(self._waiting, entry)
            while self._free == 0 or self._waiting[0] != entry:
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._free -= 1
            self._cond.notify_all()  # another slot may be free for the next in line
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()

    @contextmanager
    def run_for(self, priority: int, client: Hashable) -> Iterator[None]:
        """One network call on behalf of `client`: its turn at the gate, then its time charged to the client."""
        with self.slot(self.key(priority, client)):
            start = time.perf_counter()
            try:
                yield
            finally:
                self.ledger.charge(client, time.perf_counter() - start)

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)
