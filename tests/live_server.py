"""A real uvicorn server in a daemon thread on a free localhost port, for the tests."""

from __future__ import annotations

import threading

from app.core.http import uvicorn_config
from app.core.settings import Settings
from app.server import create_app
from bench.server_process import free_port, wait_ready

__all__ = ["LiveServer", "free_port", "wait_ready"]


class LiveServer:
    """uvicorn in a daemon thread on a free port, configured as `lgm-pose serve` (its limits included); `url` once
    /readyz says ready."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        self.settings = settings
        self.port = port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn_config(create_app(settings), settings, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.ready = wait_ready(self.url, alive=self.thread.is_alive)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
