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
        try:
            self.ready = wait_ready(self.url, alive=self.thread.is_alive)
        except BaseException:  # failed to load (said on /readyz, in the error): not left running
            self.stop()
            raise

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def error_of(r, status: int, type_: str) -> dict:
    """The one error shape (`{"error": {"type", "message", "request_id"}}`, the id as in X-Request-ID) with `status`
    and `type_`; its body."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["type"] == type_, body
    assert body["error"]["request_id"] == r.headers["x-request-id"]
    return body["error"]
