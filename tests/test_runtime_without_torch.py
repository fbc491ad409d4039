"""The CPU service runs from ONNX exports alone: POST /pose and WS /ws/pose with torch, torchvision and
Ultralytics made unimportable in the server process (a stand-in for the runtime-only install)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from live_server import free_port, wait_ready
from websockets.sync.client import connect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[1]
SERVER = textwrap.dedent("""
    import sys
    BLOCKED = ("torch", "torchvision", "ultralytics")

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"{name} is not part of the runtime", name=name)

    sys.meta_path.insert(0, Block())
    import uvicorn
    from app.server import create_app
    from app.settings import Settings

    settings = Settings(pose_weights=sys.argv[1], detector_weights=sys.argv[2], port=int(sys.argv[3]))
    app = create_app(settings)

    @app.get("/loaded-modules")
    def loaded() -> list[str]:
        return sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)

    uvicorn.run(app, host="127.0.0.1", port=settings.port, log_level="warning")
""")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, random_checkpoint: Path) -> tuple[Path, Path]:
    from app.settings import DEFAULT_POSE_WEIGHTS

    out = tmp_path_factory.mktemp("runtime")
    weights = DEFAULT_POSE_WEIGHTS if DEFAULT_POSE_WEIGHTS.is_file() else random_checkpoint
    subprocess.run([sys.executable, "-m", "app.cli", "export", "--weights", str(weights), "--out",
                    str(out / "pose.onnx"), "--detector-out", str(out / "detector.onnx")], check=True, cwd=REPO,
                   capture_output=True)
    return out / "pose.onnx", out / "detector.onnx"


def test_pose_and_stream_without_torch(exports: tuple[Path, Path], bus_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(exports[0]), str(exports[1]), str(port)], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_ready(url, alive=lambda: proc.poll() is None)
        assert ready["model"]["backend"] == "onnxruntime" and ready["model"]["dataset"] == "coco"
        r = httpx.post(url + "/pose", content=bus_path.read_bytes(), headers={"Content-Type": "image/jpeg"},
                       timeout=60)
        assert r.status_code == 200, r.text
        assert len(r.json()["persons"]) >= 3
        with connect(url.replace("http", "ws") + "/ws/pose") as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "hello"
            ws.send(bus_path.read_bytes())
            answer = json.loads(ws.recv(timeout=60))
        assert answer["type"] == "pose" and len(answer["persons"]) >= 3
        assert httpx.get(url + "/loaded-modules", timeout=10).json() == []
    finally:
        proc.terminate()
        proc.wait(30)
