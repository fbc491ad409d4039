"""A real uvicorn server in a daemon thread on a free localhost port, for the tests."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from app.server import create_app
from app.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                r = httpx.get(self.url + "/readyz", timeout=2)
                if r.status_code == 200:
                    self.ready = r.json()
                    return
                if r.json().get("status") == "failed":
                    raise RuntimeError(r.text)
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server did not get ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
