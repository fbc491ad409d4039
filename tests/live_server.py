"""A real uvicorn server in a daemon thread on a free localhost port, for the tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import httpx

from app.server import create_app
from app.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 180, alive: Callable[[], bool] = lambda: True) -> dict:
    """Poll /readyz until 200 (its JSON is returned); a 'failed' status or a dead server raises."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not alive():
            raise RuntimeError("server exited before it was ready")
        try:
            r = httpx.get(url + "/readyz", timeout=2)
            if r.status_code == 200:
                return r.json()
            if r.json().get("status") == "failed":
                raise RuntimeError(r.text)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("server did not get ready")


class LiveServer:
    """uvicorn in a daemon thread on a free port; `url` once /readyz says ready."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        self.port = port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.ready = wait_ready(self.url, alive=self.thread.is_alive)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
