"""Hostile images for `lgm-pose bench hostile` (issue 25, rows 3 and 5): what they cost a real server.

`attacks(server)` names three attacks, each a callable that attacks the server and returns its own figures, for
`bench.hostile_probe.measure_attack` (which measures /healthz, RSS, a normal client's throughput and health around
it):
- compressed_format_bombs: 8 threads send, for about 20 s, a 680-byte lossless WebP, a 1 KB RLE BMP and a 2 KB
  1-bit PNG, each declaring 4000x4000 pixels (under the pixel limit): refused on the header (413);
- det_conf0_burst: 64 concurrent bus.jpg with det_conf=0 (the most persons, so the most crops): 200 or 503, the
  crops inside the memory budget;
- closed_sockets: 90 such uploads whose sockets close 50 ms after the body is sent: their work is cancelled, and
  `drained_s` says how long the server took to end all 90 (499 in its metrics).
"""

from __future__ import annotations

import asyncio
import io
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.server_process import ServerProcess
from bench.service_load import bus_jpg

BOMB_SIDE = 4000
# the bombs come from an address of their own, as a stranger's would (all of 127/8 is this machine's loopback):
# the server cools down repeat offenders per client address (app/core/offenders.py), not the normal client beside
ATTACKER_ADDRESS = "127.0.0.2"


def webp_bomb(side: int = BOMB_SIDE) -> bytes:
    """A flat lossless WebP of side x side pixels: a one-symbol Huffman code costs no bits per pixel (~680 bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 90, 90)).save(buf, "WEBP", lossless=True)
    return buf.getvalue()


def one_bit_png_bomb(side: int = BOMB_SIDE) -> bytes:
    """A blank 1-bit PNG of side x side pixels: deflate at its 1032:1 ceiling (~2 KB for 4000x4000)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (side, side), 0).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def bmp_rle_bomb(side: int = BOMB_SIDE) -> bytes:
    """An RLE8 BMP of side x side pixels whose pixel data is one end-of-bitmap escape (the rest is left undefined,
    which decoders fill): a 1 KB palette and 2 bytes of data."""
    data, palette = bytes([0, 1]), bytes(4 * 256)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(data), 2835, 2835, 256, 0)  # BI_RLE8
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


BOMBS = (("image/webp", webp_bomb), ("image/bmp", bmp_rle_bomb), ("image/png", one_bit_png_bomb))


def bomb_threads(url: str, threads: int = 8, seconds: float = 20.0,
                 address: str = ATTACKER_ADDRESS) -> dict[str, Any]:
    """`threads` clients (from the local `address`) each posting the three bombs in turn for `seconds`, without pause
    (Retry-After ignored): statuses and bytes sent."""
    import httpx

    bombs = [(media, make()) for media, make in BOMBS]
    statuses: Counter[str] = Counter()
    sent = [0]
    lock, deadline = threading.Lock(), time.perf_counter() + seconds

    def run() -> None:
        with httpx.Client(timeout=60, transport=httpx.HTTPTransport(local_address=address)) as client:
            i = 0
            while time.perf_counter() < deadline:
                media, data = bombs[i % len(bombs)]
                i += 1
                try:
                    status = str(client.post(url + "/pose", content=data, headers={"Content-Type": media}).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    statuses[status] += 1
                    sent[0] += len(data)

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 120)
    return {"requests": sum(statuses.values()), "statuses": dict(statuses), "bytes_sent": sent[0],
            "bomb_bytes": {media: len(data) for media, data in bombs}}


def det_conf0_burst(url: str, concurrent: int = 64) -> dict[str, Any]:
    """`concurrent` bus.jpg at once with det_conf=0: statuses and persons answered."""
    import httpx

    data = bus_jpg().read_bytes()

    async def burst() -> list[httpx.Response | BaseException]:
        async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=concurrent)) as client:
            return await asyncio.gather(*(client.post(url + "/pose", content=data, params={"det_conf": "0"},
                                                      headers={"Content-Type": "image/jpeg"})
                                          for _ in range(concurrent)), return_exceptions=True)

    answers = asyncio.run(burst())
    statuses = Counter(str(a.status_code) if isinstance(a, httpx.Response) else type(a).__name__ for a in answers)
    persons = [len(a.json()["persons"]) for a in answers if isinstance(a, httpx.Response) and a.status_code == 200]
    return {"statuses": dict(statuses), "max_persons_answered": max(persons, default=0)}


def _metric(url: str, name: str) -> float:
    import httpx

    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def closed_sockets(url: str, count: int = 90, linger_s: float = 0.05, wait_s: float = 60.0) -> dict[str, Any]:
    """`count` det_conf=0 uploads of bus.jpg, each socket closed `linger_s` after its body: how long until the
    server has ended them all (its 499s), and how many it still answered in full before noticing."""
    data, host_port = bus_jpg().read_bytes(), url.removeprefix("http://")
    host, port = host_port.rsplit(":", 1)
    head = (f"POST /pose?det_conf=0 HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    left = 'lgm_pose_errors_total{type="client_disconnect"}'
    before = _metric(url, left)
    start = time.perf_counter()
    for _ in range(count):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head + data)
            time.sleep(linger_s)
    sent_s = time.perf_counter() - start
    ended = before
    while time.perf_counter() - start < sent_s + wait_s and (ended := _metric(url, left)) < before + count:
        time.sleep(0.1)
    return {"sent": count, "sent_s": round(sent_s, 1), "ended_as_client_gone": int(ended - before),
            "drained_s": round(time.perf_counter() - start - sent_s, 2)}


def attacks(server: ServerProcess) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """This module's attacks on `server`, named, for `bench.hostile_probe.measure_attack`."""
    url = server.url
    return [("compressed_format_bombs", lambda: bomb_threads(url)),
            ("det_conf0_burst", lambda: det_conf0_burst(url)),
            ("closed_sockets", lambda: closed_sockets(url))]
