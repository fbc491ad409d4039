"""Issue 25's WebSocket and access attacks for `lgm-pose bench hostile`: each a callable that attacks a running
server and returns its own figures, to run under `bench.hostile_probe.measure_attack`.

- `ws text flood`: 4 streams sending 16 MiB text messages as fast as the server takes them (reconnecting when
  closed);
- `ws idle streams`: 20 connections from 127.0.0.1 that never send a frame; does a stranger (127.0.0.2) still
  get a stream?
- `ws ping flood`: pings as fast as possible from a client that never reads;
- `dns rebinding`: `Host: evil.example` with `Origin: http://evil.example`, an ftp:// origin, and HTTP with a
  foreign Host.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

Attack = Callable[[], dict[str, Any]]
TEXT_BYTES = 16 << 20
# the text flood comes from an address of its own, as a stranger's would (all of 127/8 is this machine's loopback):
# the server cools down an address whose streams it keeps closing for oversized messages (app/core/offenders.py)
FLOOD_ADDRESS = "127.0.0.6"


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def ws_handshake(host: str, headers: dict[str, str] | None = None, origin: str | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + (f"Origin: {origin}\r\n" if origin else "")
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET /ws/pose HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def _status(sock: socket.socket) -> int:
    """The status of the answer on `sock` (0 if none)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def _masked(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
                                     if n < 65536 else bytes([0x80 | 127]) + struct.pack("!Q", n))
    return head + b"\0\0\0\0" + payload  # a zero mask: the payload as is


def text_flood(url: str, headers: dict[str, str] | None, streams: int = 4, seconds: float = 15.0) -> Attack:
    def attack() -> dict[str, Any]:
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        counts = {"messages_sent": 0, "answers": 0, "connections": 0, "closed_by_server": 0}
        text, stop = "x" * TEXT_BYTES, time.monotonic() + seconds

        def one() -> None:
            while time.monotonic() < stop:
                try:
                    with connect(url.replace("http", "ws", 1) + "/ws/pose", additional_headers=headers,
                                 max_size=None, open_timeout=10, close_timeout=2,
                                 source_address=(FLOOD_ADDRESS, 0)) as ws:
                        counts["connections"] += 1
                        ws.recv(timeout=10)  # hello
                        while time.monotonic() < stop:
                            counts["messages_sent"] += 1  # attempted: the server may refuse it from its header
                            ws.send(text)
                            try:
                                while True:  # answers so far, without waiting
                                    ws.recv(timeout=0.001)
                                    counts["answers"] += 1
                            except TimeoutError:
                                pass
                except (WebSocketException, OSError, TimeoutError):
                    counts["closed_by_server"] += 1
                    time.sleep(0.05)

        threads = [threading.Thread(target=one, daemon=True) for _ in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        return counts

    return attack


def idle_streams(url: str, headers: dict[str, str] | None, count: int = 20, seconds: float = 10.0) -> Attack:
    def attack() -> dict[str, Any]:
        from websockets.sync.client import connect

        host, port = _address(url)
        socks, accepted, refused = [], 0, 0
        for _ in range(count):
            sock = socket.create_connection((host, port), timeout=10)
            sock.sendall(ws_handshake(f"{host}:{port}", headers))
            socks.append(sock)
        time.sleep(1.0)  # refused ones are closed with 1013 after the handshake
        for sock in socks:
            sock.settimeout(0.3)
            data = b""
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except OSError:
                pass
            accepted += data.startswith(b"HTTP/1.1 101")
            refused += b"\x88" in data and b"\x03\xf5" in data  # a close frame with code 1013
        stranger = socket.socket()
        stranger.bind(("127.0.0.2", 0))
        stranger.settimeout(10)
        stranger.connect((host, port))
        try:
            with connect(f"ws://{host}:{port}/ws/pose", sock=stranger, additional_headers=headers,
                         open_timeout=10) as ws:
                stranger_served = '"hello"' in str(ws.recv(timeout=10))
        except Exception:  # noqa: BLE001 (a figure: the stranger was refused)
            stranger_served = False
        time.sleep(seconds)
        for sock in socks:
            sock.close()
        return {"connections": count, "handshakes_101": accepted, "closed_1013": refused,
                "stranger_from_127.0.0.2_served": stranger_served}

    return attack


def ping_flood(url: str, headers: dict[str, str] | None, seconds: float = 15.0) -> Attack:
    def attack() -> dict[str, Any]:
        host, port = _address(url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # never read: the server's pongs pile up there
        sock.connect((host, port))
        sock.settimeout(10)
        sock.sendall(ws_handshake(f"{host}:{port}", headers))
        status = _status(sock)
        burst, sent, stop = _masked(0x9, b"p" * 125) * 4000, 0, time.monotonic() + seconds
        try:
            while time.monotonic() < stop:
                sock.sendall(burst)
                sent += len(burst)
        except OSError:
            pass
        sock.close()
        return {"handshake": status, "pings_sent": sent // 131, "mb_sent": round(sent / 1e6, 1)}

    return attack


def dns_rebinding(url: str, headers: dict[str, str] | None) -> Attack:
    def attack() -> dict[str, Any]:
        import httpx

        host, port = _address(url)
        out: dict[str, Any] = {}
        for name, (host_header, origin) in {"ws_rebinding": ("evil.example", "http://evil.example"),
                                            "ws_ftp_origin": (f"{host}:{port}", f"ftp://{host}:{port}"),
                                            "ws_same_origin": (f"{host}:{port}", f"http://{host}:{port}")}.items():
            with socket.create_connection((host, port), timeout=10) as sock:
                sock.sendall(ws_handshake(host_header, headers, origin))
                out[name] = _status(sock)
        out["http_rebinding"] = httpx.get(url + "/healthz", headers={"Host": "evil.example"}, timeout=10).status_code
        return out

    return attack


def attacks(server: Any, headers: dict[str, str] | None = None) -> list[tuple[str, Attack]]:
    """The named attacks on `server` (anything with a `url`); `headers`: the API key's, if it has one."""
    url = server.url
    return [("ws text flood (4 streams of 16 MiB messages)", text_flood(url, headers)),
            ("ws idle streams (20 from one address)", idle_streams(url, headers)),
            ("ws ping flood (a client that never reads)", ping_flood(url, headers)),
            ("dns rebinding (Host and Origin evil.example)", dns_rebinding(url, headers))]
