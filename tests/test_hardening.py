"""Hostile but legitimate clients (issue 14, first items): one validation for HTTP and streams, the one error
shape for every error, strict JSON out, no silent stream closes, no internals in answers. Real server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

from live_server import LiveServer, error_of  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from app.core.settings import Settings  # noqa: E402
from bench.hostile import amplification_jpeg  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(random_checkpoint: Path):
    live = LiveServer(Settings(pose_weights=random_checkpoint, backend="torch", torch_threads=2, max_persons=20))
    yield live
    live.stop()


def _error(r: httpx.Response, status: int, type_: str) -> dict:
    return error_of(r, status, type_)


def test_unknown_route_and_method_use_the_error_shape(server: LiveServer) -> None:
    _error(httpx.get(server.url + "/no-such-route"), 404, "not_found")
    _error(httpx.post(server.url + "/healthz"), 405, "method_not_allowed")


def test_request_id_is_echoed_or_made(server: LiveServer) -> None:
    assert httpx.get(server.url + "/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = httpx.get(server.url + "/healthz", headers={"X-Request-ID": "bad id\\with junk"}).headers["x-request-id"]
    assert made != "bad id\\with junk" and len(made) == 16


@pytest.mark.parametrize(("field", "value", "type_"), [
    ("max_persons", "1.7", "bad_parameter"),
    ("max_persons", "9" * 5000, "bad_parameter"),
    ("det_conf", "nan", "bad_parameter"),
    ("boxes", "[" * 50_000 + "]" * 50_000, "bad_boxes"),
    ("boxes", "[[0, 0, " + "9" * 5000 + ", 10]]", "bad_boxes"),
    ("boxes", "[[0, 0, 3e9, 10]]", "bad_boxes"),
])
def test_bad_parameters_are_4xx_and_keep_the_connection(server: LiveServer, bus_path: Path, field: str, value: str,
                                                       type_: str) -> None:
    with httpx.Client(timeout=60) as client:
        for route in ("/pose", "/pose/render"):
            r = client.post(server.url + route, files={"image": ("bus.jpg", bus_path.read_bytes(), "image/jpeg")},
                            data={field: value})
            error = _error(r, 422, type_)
            assert value[:40] not in error["message"]  # the raw input is not echoed
        assert client.get(server.url + "/healthz").status_code == 200  # same connection, still served


def test_stream_refuses_bad_controls_with_a_message_and_stays_open(server: LiveServer, bus_path: Path) -> None:
    with connect(server.url.replace("http", "ws") + "/ws/pose") as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
        bad = ['{"max_persons": 1000}', '{"det_conf": 0, "max_persons": 21}', '{"timestamp_ms": NaN}',
               '{"frame_id": 1e400}', "[" * 50_000 + "]" * 50_000, '{"smoothing": "no"}']
        for text in bad:
            ws.send(text)
            answer = json.loads(ws.recv(timeout=30))  # strict JSON parses, or this raises
            assert answer["type"] == "error" and answer["error"]["type"] == "bad_control", (text[:40], answer)
        ws.send('{"frame_id": 5, "timestamp_ms": 1000}')
        ws.send(bus_path.read_bytes())
        pose = json.loads(ws.recv(timeout=60))
        assert pose["type"] == "pose" and pose["frame_id"] == 5
        assert len(pose["persons"]) <= 20
        assert "NaN" not in json.dumps(pose)


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.split(" ")[-1])
    return 0.0


def test_client_leaving_mid_upload_is_not_a_server_error(server: LiveServer) -> None:
    import socket
    import time

    left = 'lgm_pose_errors_total{type="client_disconnect"}'
    internal = 'lgm_pose_errors_total{type="internal_error"}'
    before_left, before_internal = _metric(server.url, left), _metric(server.url, internal)
    host, port = server.url.removeprefix("http://").split(":")
    for content_type in ("image/jpeg", "multipart/form-data; boundary=xyz"):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(f"POST /pose HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n"
                         "Content-Length: 100000\r\n\r\n".encode() + b"--xyz\r\n" + b"x" * 1000)
            time.sleep(0.3)
    deadline = time.time() + 10
    while time.time() < deadline and _metric(server.url, left) < before_left + 2:
        time.sleep(0.2)
    assert _metric(server.url, left) == before_left + 2
    assert _metric(server.url, internal) == before_internal


@pytest.fixture(scope="module")
def locked(random_checkpoint: Path):
    live = LiveServer(Settings(pose_weights=random_checkpoint, backend="torch", torch_threads=2, api_key="s3cret",
                               allowed_origins=["https://viewer.example"]))
    yield live
    live.stop()


def test_api_key_guards_everything_but_health(locked: LiveServer, bus_path: Path) -> None:
    image = {"image": ("bus.jpg", bus_path.read_bytes(), "image/jpeg")}
    r = httpx.post(locked.url + "/pose", files=image, timeout=60)
    assert _error(r, 401, "unauthorized") and r.headers["www-authenticate"] == "Bearer"
    _error(httpx.post(locked.url + "/pose", files=image, headers={"Authorization": "Bearer wrong"}), 401,
           "unauthorized")
    _error(httpx.get(locked.url + "/eval"), 401, "unauthorized")
    _error(httpx.get(locked.url + "/metrics"), 401, "unauthorized")
    assert httpx.get(locked.url + "/healthz").status_code == 200
    assert httpx.get(locked.url + "/readyz").status_code == 200
    auth = {"Authorization": "Bearer s3cret"}
    assert httpx.post(locked.url + "/pose", files=image, headers=auth, timeout=60).status_code == 200
    assert httpx.get(locked.url + "/eval", headers=auth).status_code == 200
    assert httpx.get(locked.url + "/metrics", headers=auth).status_code == 200


def test_streams_need_the_key_and_an_allowed_origin(locked: LiveServer) -> None:
    from websockets.exceptions import InvalidStatus

    url = locked.url.replace("http", "ws") + "/ws/pose"
    with pytest.raises(InvalidStatus):
        connect(url, open_timeout=10)
    with pytest.raises(InvalidStatus):
        connect(url, subprotocols=["bearer.s3cret"], origin="https://evil.example", open_timeout=10)
    for origin in (None, "https://viewer.example", locked.url):
        with connect(url, subprotocols=["bearer.s3cret"], origin=origin, open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "hello"
    with connect(url, additional_headers={"Authorization": "Bearer s3cret"}, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"


def test_cross_origin_stream_refused_without_a_key_too(server: LiveServer) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        connect(server.url.replace("http", "ws") + "/ws/pose", origin="https://evil.example", open_timeout=10)


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=xyz", "image/jpeg"])
def test_chunked_upload_cut_off_at_the_limit(server: LiveServer, content_type: str) -> None:
    """Without Content-Length the body is counted as it streams: 413 soon after the limit, and the connection
    closed (the rest of the body is never read)."""
    import select
    import socket

    limit = server.settings.max_upload_bytes
    host, port = server.url.removeprefix("http://").split(":")
    sent, chunk = 0, b"x" * (1 << 16)
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        sock.sendall(f"POST /pose HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        preamble = (b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
                    b"Content-Type: image/jpeg\r\n\r\n")
        sock.sendall(b"%x\r\n" % len(preamble) + preamble + b"\r\n")
        sock.settimeout(30)
        try:  # send until the answer is there (checked before every chunk), at most 20x the limit
            while sent < 20 * limit and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed while we were still sending
        answer = sock.recv(65536)
        sock.settimeout(10)
        try:
            while sock.recv(65536):  # until the server closes: b"" (FIN)
                pass
            closed = True
        except ConnectionResetError:  # closed with our unread body in its buffer
            closed = True
        except TimeoutError:
            closed = False
    head = answer.decode(errors="replace").lower()
    assert head.startswith("http/1.1 413") and "\r\nconnection: close\r\n" in head, head[:300]
    assert closed, "the connection stayed open after 413"
    # answered soon after the limit: what we sent past it is what was in flight when the server answered (the
    # kernel's buffers once it stopped reading); 2 MiB leaves room under load, far below the 20x a reader would take
    body = len(preamble) + sent  # the preamble is body too (all of it with image/jpeg)
    assert limit < body < limit + (2 << 20), (body, limit)


def test_pixel_amplification_jpeg_refused_before_decoding(random_checkpoint: Path) -> None:
    live = LiveServer(Settings(pose_weights=random_checkpoint, backend="torch", torch_threads=2,
                               max_pixels=50_000_000))
    try:
        r = httpx.post(live.url + "/pose", content=amplification_jpeg(), headers={"Content-Type": "image/jpeg"},
                       timeout=30)
        assert "cannot hold" in _error(r, 400, "corrupt_image")["message"]
    finally:
        live.stop()


def test_decoded_pixels_in_flight_are_budgeted(random_checkpoint: Path, bus_path: Path) -> None:
    """With room for one bus.jpg (875k pixels) at a time, a burst gets 200s and 503s, never more memory."""
    import asyncio

    live = LiveServer(Settings(pose_weights=random_checkpoint, backend="torch", torch_threads=2,
                               max_pixels_in_flight=1_000_000))
    data = bus_path.read_bytes()

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.post(live.url + "/pose", content=data,
                                                      headers={"Content-Type": "image/jpeg"}) for _ in range(6)))
    try:
        codes = sorted(r.status_code for r in asyncio.run(burst()))
        assert codes[0] == 200 and codes[-1] == 503 and set(codes) == {200, 503}, codes
        busy = next(r for r in asyncio.run(burst()) if r.status_code == 503)
        assert busy.headers["retry-after"] and "pixels in flight" in _error(busy, 503, "queue_full")["message"]
        assert httpx.post(live.url + "/pose", content=data, headers={"Content-Type": "image/jpeg"},
                          timeout=60).status_code == 200
    finally:
        live.stop()


def test_no_absolute_server_paths_in_answers(server: LiveServer) -> None:
    import re

    for path in ("/readyz", "/metrics", "/eval"):
        text = httpx.get(server.url + path, timeout=10).text
        leaks = re.findall(r'.{0,30}/(?:work|tmp|root|home|usr|opt|etc|var|srv)/.{0,30}', text)  # filesystem paths
        assert not leaks, (path, leaks)
