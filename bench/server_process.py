"""A real `lgm-pose serve` on a free localhost port: the helpers benchmarks and tests share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 180, alive: Callable[[], bool] = lambda: True) -> dict:
    """Poll /readyz until 200 (its JSON is returned); a 'failed' status or a dead server raises."""
    import httpx

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
        except (httpx.TransportError, ValueError):  # not listening yet, or not the service answering (a proxy)
            pass
        time.sleep(0.2)
    raise TimeoutError("server did not get ready")


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident set (VmRSS) or its peak since the last reset (VmHWM), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM afresh from the current RSS (Linux: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class ServerProcess:
    """`lgm-pose serve` in a child process (of `python`) with the environment's settings plus `env`; a context
    manager."""

    def __init__(self, env: dict[str, str] | None = None, cwd: Path | None = None,
                 python: str | Path = sys.executable, cluster: str | None = None, log: Path | None = None,
                 timeout: float = 180) -> None:
        """`cluster`: `lgm-pose serve --cluster CLUSTER` (Ray Serve) instead of uvicorn; `log`: its stderr to this
        file (else to a temporary one, removed at stop: never a pipe nobody reads, whose filling would block the
        server at its next log line)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "YOLO_OFFLINE": "1", **(env or {})}
        args = [str(python), "-m", "app.cli", "serve"]
        if cluster:
            args += ["--cluster", cluster]
            full_env["LGM_POSE_CLUSTER_PORT"] = str(self.port)
        else:
            args += ["--port", str(self.port)]
        self._temporary_log = log is None
        self.log_path = Path(tempfile.mkstemp(prefix="lgm-pose-serve-", suffix=".log")[1]) if log is None else log
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, cwd=cwd, env=full_env, stdout=subprocess.DEVNULL, stderr=self._log)
        try:
            self.ready = wait_ready(self.url, timeout, alive=lambda: self.proc.poll() is None)
        except BaseException as exc:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"{exc}; the server's log ends:\n{tail}") from exc

    def log_tail(self, n: int = 4000) -> str:
        """The last `n` characters of the server's stderr."""
        self._log.flush()
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
        if self._temporary_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
