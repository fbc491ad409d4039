"""The observability stack for real: the service, the Debian Prometheus scraping it with the repository's
deploy/prometheus/prometheus.yml (target rewritten to the local port, 1 s scrapes), real traffic, and then
every PromQL expression of the Grafana dashboard evaluated through Prometheus' HTTP API: each must return data.

Skipped only where /usr/bin/prometheus is missing (.ci/run installs the Debian package).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

os.environ.setdefault("YOLO_OFFLINE", "1")

from live_server import LiveServer, free_port  # noqa: E402

from app.core.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = Path("/usr/bin/prometheus")
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
CLUSTER_CONFIG = REPO / "deploy" / "prometheus" / "prometheus-cluster.yml"
GATEWAY_SD = "http://lgm-pose-gateway:8000/cluster/targets"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "lgm-pose.json"
SERVICE_TARGET = "lgm-pose:8000"
# Grafana's interval variables -> windows that hold several 1 s scrapes
KEY = "prometheus-stack-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "5s", "$__range": "1m", "$replica": ".*",
                "$source": ".*"}  # replica, source: All

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240),
              pytest.mark.skipif(not PROMETHEUS.exists(), reason="/usr/bin/prometheus not installed")]


def dashboard_exprs() -> list[str]:
    """Every `expr` in the dashboard JSON (panels, rows' nested panels, anything else), in order."""
    return _exprs(json.loads(DASHBOARD.read_text()))


def _exprs(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str) and value.strip():
                found.append(value)
            else:
                found.extend(_exprs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_exprs(item))
    return found


def to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unresolved Grafana variable in {expr!r}"
    return expr


def local_config(service_port: int, prom_port: int, key_file: Path) -> dict:
    """The repository's prometheus.yml with the service target -> 127.0.0.1:service_port, 1 s scrapes, and the
    API key read from `key_file` instead of the compose secret."""
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    cfg["global"] = {**cfg.get("global", {}), "scrape_interval": "1s", "scrape_timeout": "1s",
                     "evaluation_interval": "1s"}
    rewritten = False
    for job in cfg["scrape_configs"]:
        job["scrape_interval"] = job["scrape_timeout"] = "1s"
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(key_file)
        kept = []
        for sc in job.get("static_configs", []):
            targets = sc["targets"]
            if SERVICE_TARGET in targets:
                sc["targets"] = [f"127.0.0.1:{service_port}"]
                rewritten = True
            elif "localhost:9090" in targets:
                sc["targets"] = [f"127.0.0.1:{prom_port}"]
            else:
                continue  # e.g. the gpu variant: not running here
            kept.append(sc)
        job["static_configs"] = kept
    assert rewritten, f"{PROM_CONFIG} has no target {SERVICE_TARGET}"
    return cfg


def local_cluster_config(gateway_port: int, prom_port: int, key_file: Path) -> dict:
    """The repository's prometheus-cluster.yml: discovery through the local gateway, 1 s, the key from a file."""
    cfg = yaml.safe_load(CLUSTER_CONFIG.read_text())
    cfg["global"] = {**cfg["global"], "scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    for job in cfg["scrape_configs"]:
        for sd in job.get("http_sd_configs", []):
            assert sd["url"] == GATEWAY_SD, sd
            sd["url"], sd["refresh_interval"] = f"http://127.0.0.1:{gateway_port}/cluster/targets", "1s"
            sd["authorization"]["credentials_file"] = str(key_file)
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(key_file)
        for sc in job.get("static_configs", []):
            sc["targets"] = [f"127.0.0.1:{prom_port}" if t == "localhost:9090" else t for t in sc["targets"]]
    return cfg


class LivePrometheus:
    """/usr/bin/prometheus on a free port with a given config, its TSDB in a temporary folder."""

    def __init__(self, workdir: Path, service_port: int, key_file: Path, cluster: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        build = local_cluster_config if cluster else local_config
        config.write_text(yaml.safe_dump(build(service_port, self.port, key_file), sort_keys=False))
        self.log = workdir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"prometheus not ready:\n{self.log.read_text()[-3000:]}")

    def query(self, promql: str) -> list[dict]:
        r = httpx.get(self.url + "/api/v1/query", params={"query": promql}, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{promql}: {r.text}"
        return body["data"]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, random_checkpoint: Path):
    weights = random_checkpoint
    key_file = tmp_path_factory.mktemp("secrets") / "api_key"
    key_file.write_text(KEY + "\n")
    settings = Settings(pose_weights=weights, max_wait_ms=20, max_upload_bytes=2_000_000,
                        max_pixels=2_000_000, torch_threads=2, api_key_file=key_file,  # as compose sets it up
                        onnx_cache_dir=tmp_path_factory.mktemp("onnx"))  # if the backend is onnxruntime
    server = LiveServer(settings)
    server.weights = weights
    try:
        prom = LivePrometheus(tmp_path_factory.mktemp("prometheus"), server.port, key_file)
    except BaseException:
        server.stop()
        raise
    yield server, prom
    prom.stop()
    server.stop()


def websocket_stream(url: str, frame: bytes, frames: int = 4) -> int:
    """A short stream on WS /ws/pose: frames sent back to back (older ones may be dropped), then read until a
    pose answer; the number of frames sent. A refused handshake (InvalidStatus) or no answer fails the caller."""
    from websockets.sync.client import connect

    with connect(url.replace("http://", "ws://") + "/ws/pose", max_size=None, open_timeout=10,
                 subprotocols=[f"bearer.{KEY}"]) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        for _ in range(frames):
            ws.send(frame)
        deadline = time.time() + 30
        while (msg := json.loads(ws.recv(timeout=max(0.1, deadline - time.time())))).get("type") != "pose":
            assert time.time() < deadline, msg
    return frames


def send_traffic(url: str, bus: bytes, poses: int) -> None:
    """`poses` good POST /pose (raw body and multipart) and three bad requests (two error types)."""
    for i in range(poses):
        if i % 2:
            r = httpx.post(url + "/pose", files={"image": ("bus.jpg", bus, "image/jpeg")}, headers=AUTH, timeout=60)
        else:
            r = httpx.post(url + "/pose", content=bus, headers={"Content-Type": "image/jpeg", **AUTH}, timeout=60)
        assert r.status_code == 200, r.text
    for content, ctype, status in ((b"", "image/jpeg", 400), (b"not an image", "image/jpeg", 400),
                                   (b"plain text", "text/plain", 415)):
        r = httpx.post(url + "/pose", content=content, headers={"Content-Type": ctype, **AUTH}, timeout=30)
        assert r.status_code == status, r.text


def wait_scrapes(prom: LivePrometheus, instance: str, n: int, timeout: float = 20) -> None:
    """Until Prometheus has scraped `instance` n more times."""
    def scrapes() -> float:
        result = prom.query(f'count_over_time(up{{instance="{instance}"}}[10m])')
        return float(result[0]["value"][1]) if result else 0.0

    target, deadline = scrapes() + n, time.time() + timeout
    while scrapes() < target:
        assert time.time() < deadline, f"no {n} scrapes of {instance} in {timeout} s"
        time.sleep(0.3)


def is_number(sample: dict) -> bool:
    return sample["value"][1] not in ("NaN", "+Inf", "-Inf")


def test_dashboard_queries_return_data(stack, bus_path: Path) -> None:
    server, prom = stack
    instance = f"127.0.0.1:{server.port}"
    exprs = dashboard_exprs()
    assert len(exprs) >= 15, exprs
    queries = {expr: to_promql(expr) for expr in exprs}

    # the service target is scraped by the job of the repository's config
    deadline = time.time() + 20
    while not prom.query(f'up{{job="lgm-pose",instance="{instance}"}} == 1'):
        assert time.time() < deadline, prom.log.read_text()[-2000:]
        time.sleep(0.3)

    # real traffic in two rounds, so that series born in the first (route, status, error type) are seen
    # increasing in the second; a WebSocket stream where the route exists
    bus = bus_path.read_bytes()
    send_traffic(server.url, bus, poses=1)
    wait_scrapes(prom, instance, 2)
    send_traffic(server.url, bus, poses=4)
    streamed = websocket_stream(server.url, bus)  # a refused handshake fails here
    assert httpx.get(server.url + "/metrics").status_code == 401  # the key guards /metrics; Prometheus has it
    assert "lgm_pose_model_info{backend=" in httpx.get(server.url + "/metrics", headers=AUTH).text
    wait_scrapes(prom, instance, 2)

    # every dashboard expression returns a series and a number, the WebSocket ones too (a stream ran)
    def missing(expr: str) -> bool:
        result = prom.query(queries[expr])
        return not result or not any(is_number(s) for s in result)

    bad = [e for e in exprs if missing(e)]
    deadline = time.time() + 20
    while bad and time.time() < deadline:
        time.sleep(1.0)
        bad = [e for e in bad if missing(e)]
    assert not bad, "dashboard expressions without data:\n" + "\n".join(
        f"{queries[e]} -> {prom.query(queries[e])}" for e in bad)

    # and the data says what happened
    by_route = {s["metric"]["route"]: float(s["value"][1]) for s in prom.query(
        'sum by (route) (lgm_pose_request_duration_seconds_count{status="200"})')}
    assert by_route.get("/pose", 0) >= 5, by_route
    errors = {s["metric"]["type"] for s in prom.query("lgm_pose_errors_total")}
    assert {"empty_body", "unsupported_media_type"} <= errors, errors
    info = prom.query("lgm_pose_model_info")[0]["metric"]
    assert info["config"] == "coco_256x192" and info["input_size"] == "192x256" and info["device"] == "cpu"
    model = server.ready["model"]
    assert info["backend"] == model["backend"] and info["weights"] == model["weights"] == server.weights.name
    assert float(prom.query("sum(lgm_pose_batch_size_count)")[0]["value"][1]) >= 5
    assert float(prom.query(
        'histogram_quantile(0.5, sum by (le) (rate(lgm_pose_stage_duration_seconds_bucket{stage="detect"}[1m])))'
    )[0]["value"][1]) > 0
    for name in ("lgm_pose_ws_frames_received_total", "lgm_pose_ws_frames_processed_total",
                 "lgm_pose_ws_frames_dropped_total", "lgm_pose_ws_streams_active", "lgm_pose_queue_depth"):
        assert prom.query(name), name
    assert float(prom.query("lgm_pose_ws_frames_received_total")[0]["value"][1]) == streamed
    assert float(prom.query("lgm_pose_ws_frames_processed_total")[0]["value"][1]) >= 1
