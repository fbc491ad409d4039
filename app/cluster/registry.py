"""Where the gateway and Prometheus find the pose replicas: a small named Ray actor, fed by heartbeats.

Each replica announces its internal address every few seconds; an entry not refreshed within `STALE_S` is
dropped (a killed replica disappears without saying goodbye). The actor asks for no CPU.
"""

from __future__ import annotations

import time
from typing import Any

import ray

NAME, NAMESPACE = "lgm_pose_registry", "lgm_pose"
STALE_S = 15.0


@ray.remote(num_cpus=0)
class _ReplicaTable:
    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def announce(self, replica: str, url: str) -> None:
        self.entries[replica] = {"replica": replica, "url": url, "seen": time.time()}

    def forget(self, replica: str) -> None:
        self.entries.pop(replica, None)

    def live(self) -> list[dict[str, Any]]:
        now = time.time()
        self.entries = {k: e for k, e in self.entries.items() if now - e["seen"] < STALE_S}
        return sorted(self.entries.values(), key=lambda e: e["replica"])


class Registry:
    """Client of the registry actor (created by whoever comes first, kept for the cluster's life)."""

    def __init__(self) -> None:
        self.table = _ReplicaTable.options(name=NAME, namespace=NAMESPACE, get_if_exists=True,
                                           lifetime="detached").remote()

    def announce(self, replica: str, url: str) -> None:
        ray.get(self.table.announce.remote(replica, url))

    def forget(self, replica: str) -> None:
        self.table.forget.remote(replica)

    async def live(self) -> list[dict[str, Any]]:
        """Replicas seen within the last STALE_S seconds: [{replica, url, seen}]."""
        return await self.table.live.remote()
