"""Hostile clients at the HTTP edge (issue 25, rows 1, 2, 10 and 12), against a real server with small limits:
nothing is read before the key is checked and /eval bodies are capped; huge headers get 431 at the header limit;
slow-header connections are closed after the header timeout and connections past the cap get 503; the schema and
its pages need the key, and every answer carries the security headers."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

from live_server import LiveServer, free_port, wait_ready  # noqa: E402

from app.core.settings import Settings  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[1]
KEY = {"Authorization": "Bearer s3cret"}
HEADER_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 16
SECURITY = ("content-security-policy", "x-frame-options", "x-content-type-options", "referrer-policy")


@pytest.fixture(scope="module")
def server(random_checkpoint: Path):
    live = LiveServer(Settings(pose_weights=random_checkpoint, backend="torch", torch_threads=2, api_key="s3cret",
                               max_json_bytes=4096, max_header_bytes=8192, header_timeout_s=HEADER_TIMEOUT_S,
                               max_connections=MAX_CONNECTIONS))
    yield live
    live.stop()


def _connect(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of the one answer on `sock` (read until its Content-Length or the close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), data[:300]
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, json.loads(body) if body else {}


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True once the server closes `sock` (FIN or reset) within `within_s` seconds (answers are read past)."""
    sock.settimeout(within_s)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _error(status: int, headers: dict[str, str], body: dict, want_status: int, want_type: str) -> None:
    assert status == want_status, (status, body)
    assert set(body) == {"error"} and body["error"]["type"] == want_type, body
    assert body["error"]["request_id"] == headers["x-request-id"]
    assert all(h in headers for h in SECURITY), headers


# row 1: /eval bodies --------------------------------------------------------------------------------------------

def test_eval_body_is_not_read_before_the_key(server: LiveServer) -> None:
    """A 50 MB body is declared and never sent: the 401 comes at once, and the connection is closed rather than the
    body read and discarded (before the fix FastAPI waited for the whole body, then parsed it on the event loop,
    and only then checked the key)."""
    with _connect(server) as sock:
        sock.sendall(b"POST /eval/coco HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50000000\r\n\r\n" + b'{"dataset": "' + b"a" * 1000)
        sock.settimeout(10)
        status, headers, body = _answer(sock)
        _error(status, headers, body, 401, "unauthorized")
        assert _closed_by_server(sock, 1.0)  # at once, not after uvicorn's 5 s keep-alive timeout


def test_eval_body_is_capped_after_the_key(server: LiveServer) -> None:
    limit = server.settings.max_json_bytes
    big = json.dumps({"dataset": "d" * limit}).encode()
    with _connect(server) as sock:  # declared past the cap: 413 without reading it
        sock.sendall(b"POST /eval/coco HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n")
        status, headers, body = _answer(sock)
    _error(status, headers, body, 413, "too_many_bytes")
    assert headers["connection"] == "close"

    def chunks():  # streamed without a length: cut off at the cap
        yield big
    r = httpx.post(server.url + "/eval/mpii", content=chunks(), headers={**KEY, "Content-Type": "application/json"})
    _error(r.status_code, dict(r.headers), r.json(), 413, "too_many_bytes")
    r = httpx.post(server.url + "/eval/coco", content=b'{"dataset": ', headers=KEY)
    _error(r.status_code, dict(r.headers), r.json(), 422, "validation_error")
    r = httpx.post(server.url + "/eval/coco", json={"dataset": "mini", "max_images": 0}, headers=KEY)
    _error(r.status_code, dict(r.headers), r.json(), 422, "validation_error")
    assert "max_images" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/eval/coco", json={"dataset": "no-such-set"}, headers=KEY)  # parsed, validated
    _error(r.status_code, dict(r.headers), r.json(), 400, "bad_dataset")


# row 2: huge headers ----------------------------------------------------------------------------------------------

def test_huge_header_gets_431_at_the_limit(server: LiveServer) -> None:
    """One header of up to 40 MB, sent in pieces: 431 in the error shape, and the connection closed after little
    more than the limit (before the fix the whole header was read, joined in quadratic time, and served)."""
    limit, sent = server.settings.max_header_bytes, 0
    with _connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        try:
            while sent < 40 << 20:
                sock.sendall(b"a" * (1 << 16))
                sent += 1 << 16
        except OSError:
            pass  # the server answered and closed while we were still sending
        status, headers, body = _answer(sock)
    _error(status, headers, body, 431, "headers_too_large")
    assert sent < 4 << 20, sent  # at most the limit, one read (256 KiB) and the kernel's buffers
    with _connect(server) as sock:  # the configured limit, not h11's default (16 KiB): 1.5x it, unfinished
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (limit * 3 // 2))
        sock.settimeout(10)
        _error(*_answer(sock), 431, "headers_too_large")
    ok = httpx.get(server.url + "/healthz", headers={"X-Fine": "b" * (limit // 2)})  # a large but allowed header
    assert ok.status_code == 200


def test_malformed_request_gets_the_error_shape(server: LiveServer) -> None:
    """Not uvicorn's plain-text 'Invalid HTTP request received.': the one error shape, then close."""
    with _connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        _error(*_answer(sock), 400, "bad_request")
        assert _closed_by_server(sock, 5)


# row 12: slow headers, many connections ------------------------------------------------------------------------

def test_slow_headers_are_closed_after_the_header_timeout(server: LiveServer) -> None:
    """Connections that trickle header bytes, send nothing, or trickle their second request are closed once the
    header timeout passes (before the fix they stayed open as long as the client liked)."""
    socks = [_connect(server) for _ in range(3)]
    try:
        socks[2].sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _answer(socks[2])[0] == 200  # its first request is served; the second trickles
        for sock in (socks[0], socks[2]):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        start = time.monotonic()
        while time.monotonic() - start < HEADER_TIMEOUT_S + 3:
            for sock in (socks[0], socks[2]):
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass  # closed by the server
            time.sleep(0.25)
        for sock in socks:
            assert _closed_by_server(sock, 0.5)
    finally:
        for sock in socks:
            sock.close()
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_connections_past_the_cap_get_503(server: LiveServer) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    held = [_connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)  # until the server has taken them all
        r = httpx.get(server.url + "/healthz", timeout=10)
        _error(r.status_code, dict(r.headers), r.json(), 503, "too_many_connections")
        assert r.headers["retry-after"] == "1" and r.headers["connection"] == "close"
        with pytest.raises(InvalidStatus) as refused:  # not upgraded either
            connect(server.url.replace("http", "ws") + "/ws/pose", additional_headers=KEY, open_timeout=10)
        assert refused.value.response.status_code == 503
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200


# row 10: the key on the schema and its pages, security headers ------------------------------------------------

def test_schema_and_docs_need_the_key(server: LiveServer) -> None:
    for path in ("/openapi.json", "/docs", "/redoc"):
        r = httpx.get(server.url + path)
        _error(r.status_code, dict(r.headers), r.json(), 401, "unauthorized")
        assert httpx.get(server.url + path, headers=KEY).status_code == 200, path
    assert "/eval/coco" in httpx.get(server.url + "/openapi.json", headers=KEY).json()["paths"]
    # public by design (README, Access): the demo page and its files are static and the same for everyone; a
    # browser navigating there cannot send a header, and the stream itself checks the key
    for path in ("/", "/static/demo.js"):
        assert httpx.get(server.url + path).status_code == 200, path


def test_security_headers_on_every_answer(server: LiveServer) -> None:
    answers = {
        "/healthz": httpx.get(server.url + "/healthz"), "/readyz": httpx.get(server.url + "/readyz"),
        "404": httpx.get(server.url + "/no-such-route"), "405": httpx.put(server.url + "/healthz"),
        "401": httpx.get(server.url + "/eval"), "/eval": httpx.get(server.url + "/eval", headers=KEY),
        "/": httpx.get(server.url + "/"), "/static/demo.js": httpx.get(server.url + "/static/demo.js"),
        "/docs": httpx.get(server.url + "/docs", headers=KEY),
        "422": httpx.post(server.url + "/eval/coco", json={}, headers=KEY),
    }
    for name, r in answers.items():
        missing = [h for h in SECURITY if h not in r.headers]
        assert not missing, (name, missing)
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff", name
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], name
    assert answers["/healthz"].headers["content-security-policy"].startswith("default-src 'none'")
    # the demo still works under its policy: its own script, its inline style, its WebSocket and blob: videos
    demo = dict(p.strip().split(" ", 1) for p in answers["/"].headers["content-security-policy"].split(";"))
    assert demo["script-src"] == "'self'" and "'unsafe-inline'" not in demo["script-src"]
    assert "'unsafe-inline'" in demo["style-src"] and demo["connect-src"] == "'self'"
    assert "blob:" in demo["media-src"]
    page = answers["/"].text
    assert '<script src="/static/demo.js">' in page and "<script>" not in page  # no inline script to allow


# the log: a stranger's requests can neither stall the server through it nor flood it ---------------------------

def test_a_log_reader_that_falls_behind_cannot_stall_the_server(random_checkpoint: Path) -> None:
    """`lgm-pose serve` with its stderr a 4 KiB pipe that nobody reads after start-up, then 400 malformed requests
    (before the fix each one made uvicorn write a warning from the event loop; once the pipe was full the write
    blocked and the server answered nothing more, for good: what stalled `bench hostile`, whose server's stderr
    was such a pipe). Now every one is answered, /healthz too, and the lines are throttled."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(read_end, False)
    port = free_port()
    env = {**os.environ, "YOLO_OFFLINE": "1", "LGM_POSE_POSE_WEIGHTS": str(random_checkpoint),
           "LGM_POSE_BACKEND": "torch", "LGM_POSE_TORCH_THREADS": "1", "LGM_POSE_DETECTOR_IMGSZ": "320"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "info"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=write_end)
    os.close(write_end)
    logged = bytearray()

    def drain() -> bool:  # start-up's own lines are read, so that only the attack can fill the pipe
        try:
            while chunk := os.read(read_end, 65536):
                logged.extend(chunk)
        except BlockingIOError:
            pass
        return proc.poll() is None

    try:
        wait_ready(f"http://127.0.0.1:{port}", alive=drain)
        time.sleep(0.5)
        drain()
        logged.clear()
        for i in range(400):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                assert sock.recv(4096).startswith(b"HTTP/1.1 400 "), f"request {i} unanswered"
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert r.status_code == 200
        time.sleep(0.5)
        drain()
        assert logged.count(b"Invalid HTTP request received.") <= 20, logged[-500:]  # throttled, not 400 lines
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.close(read_end)
