"""A pose replica: the whole service app (detector, LGM-Pose, batcher, streams, eval jobs) in one Ray actor.

The app is served by its own uvicorn on the node's address (an internal port): the gateway forwards HTTP
requests to it through Ray (`http`, so Ray counts them for autoscaling and routes around dead replicas),
relays WebSocket streams to it (one stream, one replica), and Prometheus scrapes its /metrics there. Each
replica registers its address in Ray's key-value store with a heartbeat (`app.cluster.registry`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import httpx
import uvicorn

from app.cluster.registry import Registry
from app.core.http import uvicorn_config
from app.core.settings import Settings
from app.server import create_app

log = logging.getLogger("lgm_pose.cluster")
HEARTBEAT_S = 5.0


class PoseWorker:
    """The pose replicas' deployment class (its Ray options: app.cluster.application)."""

    def __init__(self, overrides: dict[str, Any], ready_timeout_s: float = 600.0) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        import ray
        from ray import serve

        self.replica = serve.get_replica_context().replica_id.unique_id
        # every stream reaches a replica from the gateway's address: the gateway holds the per-client cap, and no
        # address may cool down here (it would be everyone's)
        self.settings = Settings(**overrides)
        self.settings.ws_max_streams_per_client = self.settings.ws_max_streams
        self.settings.offender_cool_down_s = 0.0
        host = ray.util.get_node_ip_address()
        config = uvicorn_config(create_app(self.settings), self.settings, host=host, port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="replica-server", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + ready_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the replica's server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{host}:{port}"
        self._wait_ready(deadline)
        self.registry = Registry()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="replica-heartbeat", daemon=True)
        self._beat.start()
        self._client: httpx.AsyncClient | None = None
        log.info("replica %s serving at %s", self.replica, self.url)

    def _wait_ready(self, deadline: float) -> None:
        """Block until /readyz says the models are loaded (Ray routes nothing here before __init__ returns)."""
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"replica not ready after its timeout: {httpx.get(f'{self.url}/readyz').text}")

    def _heartbeat(self) -> None:
        while not self._stop.is_set():
            self.registry.announce(self.replica, self.url)
            self._stop.wait(HEARTBEAT_S)

    async def http(self, method: str, path: str, query: str, headers: list[tuple[str, str]],
                   body: bytes) -> dict[str, Any]:
        """One HTTP request through this replica's app; the response as status, headers, body and replica."""
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.url, timeout=None,
                                             limits=httpx.Limits(max_connections=64))
        url = httpx.URL(path=path, query=query.encode())
        response = await self._client.request(method, url, headers=headers, content=body)
        return {"status": response.status_code, "headers": list(response.headers.multi_items()),
                "body": response.content, "replica": self.replica}

    def address(self) -> dict[str, str]:
        return {"url": self.url, "replica": self.replica}

    def check_health(self) -> None:
        """Ray Serve's health check: the replica's server must be running."""
        if not self.thread.is_alive() or self.server.should_exit:
            raise RuntimeError("the replica's server stopped")

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            self.registry.forget(self.replica)
        server = getattr(self, "server", None)
        if server is not None:
            server.should_exit = True
            self.thread.join(self.settings.shutdown_timeout_s + 5)
