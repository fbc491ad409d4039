"""Hostile clients at the HTTP edge (issue 25, rows 1, 2 and 12): the attacks `lgm-pose bench hostile` runs through
`bench.hostile_probe.measure_attack`, each a callable that attacks a `ServerProcess` and returns its own figures.

- `unauth_json_50mb_x4`: 4 concurrent POST /eval/coco of a 50 MB JSON body without the key, again and again for
  10 s (expected: 401 at once, the body never buffered or parsed; the server needs LGM_POSE_API_KEY);
- `header_40mb_x4`: 4 concurrent requests, each with one 40 MB header sent in 64 KiB pieces, again and again for
  10 s (expected: 431 after the header limit, the connection closed);
- `slow_headers_500`: 500 connections each trickling a header line every second (expected: every one closed by
  the server once the header timeout passes, below the connection cap so others are still served).
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.server_process import ServerProcess

MB = 1 << 20


def _connect(server: ServerProcess, timeout: float = 60) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def _status(sock: socket.socket) -> int:
    """The status of the answer on `sock` (0: closed or reset without one)."""
    try:
        head = sock.recv(4096)
    except OSError:
        return 0
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and head.startswith(b"HTTP/1.1 ") and parts[1].isdigit() else 0


def repeat(n: int, duration_s: float, one: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
    """`one()` in `n` threads, each again and again until `duration_s` has passed; every result."""
    results: list[dict[str, Any]] = []
    deadline = time.perf_counter() + duration_s

    def loop() -> None:
        while time.perf_counter() < deadline:
            results.append(one())

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + 300)
    return results


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests, their statuses (0: no answer), the slowest answer and the most sent before it."""
    return {"requests": len(results), "statuses": dict(Counter(r["status"] for r in results)),
            "max_seconds": max(r["seconds"] for r in results), "max_sent_kb": max(r["sent_kb"] for r in results)}


def unauthenticated_bodies(server: ServerProcess, n: int = 4, size: int = 50 * MB,
                           duration_s: float = 10.0) -> dict[str, Any]:
    """`n` concurrent POST /eval/coco of a `size`-byte JSON body without the key, each sent whole, for
    `duration_s`."""
    body = b'{"dataset": "' + b"a" * (size - 16) + b'"}'
    head = (f"POST /eval/coco HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()

    def one() -> dict[str, Any]:
        start, sent = time.perf_counter(), 0
        with _connect(server) as sock:
            try:
                sock.sendall(head)
                view = memoryview(body)
                while sent < len(body):
                    sent += sock.send(view[sent:sent + MB])
            except OSError:
                pass  # answered and closed before the body was all sent
            status = _status(sock)
        return {"status": status, "sent_kb": sent // 1024, "seconds": round(time.perf_counter() - start, 2)}

    return {"body_mb": round(size / MB), "concurrent": n, **summary(repeat(n, duration_s, one))}


def huge_header(server: ServerProcess, size: int = 40 * MB, n: int = 4, duration_s: float = 10.0) -> dict[str, Any]:
    """`n` concurrent requests whose header `X-Big` is `size` bytes, sent in 64 KiB pieces until the server closes,
    again and again for `duration_s`."""
    return {"header_mb": round(size / MB), "concurrent": n,
            **summary(repeat(n, duration_s, lambda: one_huge_header(server, size)))}


def one_huge_header(server: ServerProcess, size: int) -> dict[str, Any]:
    start, sent = time.perf_counter(), 0
    with _connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        try:
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Big: ".encode())
            piece = b"a" * (1 << 16)
            while sent < size:
                sock.sendall(piece)
                sent += len(piece)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass
        status = _status(sock)
    return {"status": status, "sent_kb": sent // 1024, "seconds": round(time.perf_counter() - start, 2)}


def slow_headers(server: ServerProcess, n: int = 500, timeout_s: float = 10.0, grace_s: float = 5.0) -> dict[str, Any]:
    """`n` connections, each sending a request line and then one header line a second; how many the server closed
    within `timeout_s` (its header timeout) + `grace_s`, and when."""
    start = time.perf_counter()
    socks = []
    for _ in range(n):
        sock = _connect(server)
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode())
        sock.setblocking(False)
        socks.append(sock)
    opened = time.perf_counter() - start
    sel = selectors.DefaultSelector()
    for sock in socks:
        sel.register(sock, selectors.EVENT_READ)
    closed_at: dict[socket.socket, float] = {}
    next_trickle = time.perf_counter()
    while len(closed_at) < n and time.perf_counter() - start < opened + timeout_s + grace_s:
        if time.perf_counter() >= next_trickle:
            for sock in socks:
                if sock not in closed_at:
                    try:
                        sock.send(b"X-Slow: 1\r\n")
                    except OSError:
                        pass
            next_trickle += 1.0
        for key, _ in sel.select(timeout=0.1):
            sock = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed_at[sock] = time.perf_counter() - start
                sel.unregister(sock)
    for sock in socks:
        sock.close()
    times = sorted(closed_at.values())
    return {"connections": n, "opened_in_s": round(opened, 2), "closed_by_server": len(closed_at),
            "first_closed_s": round(times[0], 1) if times else None,
            "last_closed_s": round(times[-1], 1) if times else None}


def attacks(server: ServerProcess) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """The edge's attacks on `server`, named, for `measure_attack`."""
    return [("unauth_json_50mb_x4", lambda: unauthenticated_bodies(server)),
            ("header_40mb_x4", lambda: huge_header(server)),
            ("slow_headers_500", lambda: slow_headers(server))]
