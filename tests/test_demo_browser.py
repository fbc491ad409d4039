"""The browser demo end to end: headless Chromium with a fake webcam playing a .y4m clip of real images
(bus.jpg shifted) loads the page, streams frames over WS /ws/pose and draws the skeletons it gets back.

Chromium is driven over the DevTools protocol with the `websockets` client: Runtime.evaluate reads the page's
counters (window.demoStats), Page.captureScreenshot saves artifacts/demo_browser.png.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from test_ws import ServerProcess, checkpoint  # noqa: F401  (the fixture is shared)
from websockets.asyncio.client import connect

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300),
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")]


def write_y4m(path: Path, bus: np.ndarray, n: int = 30, size: tuple[int, int] = (640, 480)) -> None:
    """A YUV4MPEG2 (I420) clip of bus.jpg drifting sideways, `size` (w, h), 30 fps."""
    w, h = size
    s = 1.1 * h / bus.shape[0]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(n):
            a = np.array([[s, 0.0, 60.0 + 4.0 * i], [0.0, s, -0.05 * h]])
            frame = cv2.warpAffine(bus, a, (w, h), borderValue=(114, 114, 114))
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())


@pytest.fixture(scope="module")
def server(checkpoint: Path):  # noqa: F811
    srv = ServerProcess(checkpoint)
    yield srv
    srv.stop()


class Chromium:
    """Headless Chromium with remote debugging on a free port; `devtools_url` once it listens."""

    def __init__(self, url: str, y4m: Path, profile: Path) -> None:
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={y4m}", "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=900,800", url]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.log: list[str] = []
        found = threading.Event()
        self.devtools_url = ""

        def read() -> None:
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"DevTools listening on (ws://\S+)", line)
                if m:
                    self.devtools_url = m.group(1)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(60):
            self.stop()
            raise TimeoutError("chromium did not open its DevTools port:\n" + "".join(self.log[-20:]))

    def page_ws_url(self, page_url: str) -> str:
        http = "http://" + self.devtools_url.split("/")[2]
        for _ in range(100):
            for target in httpx.get(http + "/json/list", timeout=5).json():
                if target.get("type") == "page" and target.get("url", "").startswith(page_url):
                    return target["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise TimeoutError("the demo page did not open")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


async def drive(ws_url: str, shot: Path, timeout: float = 120) -> dict:
    """Poll window.demoStats until skeletons were drawn, then take a screenshot."""
    ids = itertools.count(1)
    async with connect(ws_url, max_size=None) as cdp:
        async def call(method: str, **params) -> dict:
            msg_id = next(ids)
            await cdp.send(json.dumps({"id": msg_id, "method": method, "params": params}))
            while True:
                reply = json.loads(await asyncio.wait_for(cdp.recv(), 30))
                if reply.get("id") == msg_id:
                    assert "error" not in reply, reply
                    return reply["result"]

        stats: dict = {}
        deadline = time.time() + timeout
        while time.time() < deadline:
            res = await call("Runtime.evaluate", expression="JSON.stringify(window.demoStats || null)",
                             returnByValue=True)
            stats = json.loads(res["result"].get("value") or "null") or {}
            if stats.get("poseMessages", 0) >= 5 and stats.get("personsDrawn", 0) >= 3:
                break
            await asyncio.sleep(0.5)
        res = await call("Runtime.evaluate", returnByValue=True, expression=(
            "JSON.stringify({title: document.title, messages: document.getElementById('stats').dataset.messages,"
            " drawn: document.getElementById('stats').dataset.drawn, text: document.getElementById('stats')"
            ".textContent, video: [document.getElementById('video').videoWidth,"
            " document.getElementById('video').videoHeight]})"))
        stats["page"] = json.loads(res["result"]["value"])
        png = base64.b64decode((await call("Page.captureScreenshot", format="png"))["data"])
        shot.write_bytes(png)
        return stats


def test_browser_demo_draws_keypoints(server: ServerProcess, bus_image: np.ndarray, tmp_path: Path) -> None:
    assert "demo.js" in httpx.get(server.url + "/", timeout=10).text
    assert httpx.get(server.url + "/static/demo.js", timeout=10).status_code == 200
    y4m = tmp_path / "bus.y4m"
    write_y4m(y4m, bus_image)
    profile = tmp_path / "profile"
    profile.mkdir()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "demo_browser.png"
    shot.unlink(missing_ok=True)
    page_url = server.url + "/?autostart=1&kpt_thr=0&pose_source=detector"  # random test weights: low scores
    t0 = time.perf_counter()
    browser = Chromium(page_url, y4m, profile)
    try:
        stats = asyncio.run(drive(browser.page_ws_url(page_url), shot))
    finally:
        browser.stop()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"\nbrowser demo after {time.perf_counter() - t0:.1f} s: {stats}")
    assert stats.get("poseMessages", 0) >= 5, (stats, "".join(browser.log[-30:]))
    assert stats["personsDrawn"] >= 3 and stats["keypointsDrawn"] >= 17 * 3 and stats["errors"] == 0
    assert stats["page"]["video"] == [640, 480]
    assert stats["source"] == "detector" and "source detector" in stats["page"]["text"]  # the source switch
    assert int(stats["page"]["messages"]) >= 5 and "persons drawn" in stats["page"]["title"]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
