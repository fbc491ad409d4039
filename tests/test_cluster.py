"""The service on a local Ray Serve cluster (`lgm-pose serve --cluster local`, 2 pose replicas), for real.

Every route answers through the gateway as it does from a direct server; both replicas serve; killing a
replica during a burst loses no request (each gets its answer or 503 + Retry-After) and the replica comes
back; a WebSocket stream stays on its replica while another one dies; an evaluation job is answered for by
every replica (shared job store); the real Prometheus finds every replica through the gateway's service
discovery and every dashboard query returns data for the cluster.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="the cluster extra is not installed")
os.environ.setdefault("YOLO_OFFLINE", "1")

from live_server import LiveServer  # noqa: E402
from test_prometheus_stack import (  # noqa: E402
    AUTH,
    KEY,
    PROMETHEUS,
    LivePrometheus,
    dashboard_exprs,
    send_traffic,
    to_promql,
    websocket_stream,
)

from app.core.settings import Settings  # noqa: E402
from bench.server_process import ServerProcess  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, data_root: Path):
    work = tmp_path_factory.mktemp("cluster")
    env = {"LGM_POSE_CLUSTER_NUM_REPLICAS": "2", "LGM_POSE_TORCH_THREADS": "1", "LGM_POSE_API_KEY": KEY,
           "LGM_POSE_JOBS_DIR": str(work / "jobs"), "LGM_POSE_DATA_ROOT": str(data_root),
           "LGM_POSE_CLUSTER_RETRIES": "3", "RAY_DEDUP_LOGS": "0"}
    server = ServerProcess(env, cwd=REPO, cluster="local", log=work / "cluster.log", timeout=300)
    try:
        wait_replicas(server.url, 2, timeout=120)
        yield server
    finally:
        server.stop()
        print((work / "cluster.log").read_text()[-3000:])


def wait_replicas(url: str, n: int, timeout: float) -> list[dict]:
    """Until the gateway lists `n` live replicas that each answer /readyz."""
    def ready(replica_url: str) -> bool:
        try:
            return httpx.get(replica_url + "/readyz", timeout=5).status_code == 200
        except httpx.TransportError:  # a killed replica, listed until its heartbeat goes stale
            return False

    deadline = time.time() + timeout
    while time.time() < deadline:
        live = httpx.get(url + "/cluster/replicas", headers=AUTH, timeout=10).json()["replicas"]
        if len(live) == n and all(ready(e["url"]) for e in live):
            return live
        time.sleep(1)
    raise TimeoutError(f"not {n} replicas after {timeout} s: {live}")


def kill_replica(replica: str) -> None:
    """ray.kill on one pose replica's actor (the Serve controller starts a new one)."""
    import ray

    ray.init(address="auto", namespace="serve", log_to_driver=False)
    try:
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if "PoseWorker" in a["name"] and a["name"].endswith(replica)]
        assert len(names) == 1, names
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    finally:
        ray.shutdown()  # this test process must not stay a driver of a cluster that goes away with its fixture


def pose(url: str, image: bytes, client: httpx.Client | None = None) -> httpx.Response:
    client = client or httpx
    return client.post(url + "/pose", content=image, headers={"Content-Type": "image/jpeg", **AUTH}, timeout=90)


def test_routes_answer_as_they_do_directly(cluster: ServerProcess, bus_path: Path, data_root: Path) -> None:
    image = bus_path.read_bytes()
    direct = LiveServer(Settings(api_key=KEY, torch_threads=1, jobs_dir=None, data_root=data_root))
    try:
        for url in (direct.url, cluster.url):
            assert httpx.get(url + "/healthz", timeout=10).status_code == 200
        ours, theirs = pose(cluster.url, image), pose(direct.url, image)
        assert ours.status_code == theirs.status_code == 200 and ours.headers["x-replica"]
        a, b = ours.json()["persons"], theirs.json()["persons"]
        assert len(a) == len(b) >= 4
        np.testing.assert_allclose([[(k["x"], k["y"]) for k in p["keypoints"]] for p in a],
                                   [[(k["x"], k["y"]) for k in p["keypoints"]] for p in b], atol=0.5)
        checks = [("GET", "/readyz", {}, None), ("GET", "/metrics", AUTH, None), ("GET", "/eval", AUTH, None),
                  ("GET", "/openapi.json", {}, None), ("GET", "/no/such/route", AUTH, None),
                  ("POST", "/pose", {}, image), ("POST", "/pose", {"Content-Type": "image/jpeg", **AUTH}, b"junk"),
                  ("POST", "/pose", {"Content-Type": "text/plain", **AUTH}, b"text"),
                  ("GET", "/eval/nope", AUTH, None), ("DELETE", "/pose", AUTH, None)]
        for method, path, headers, body in checks:
            got = [httpx.request(method, url + path, headers=headers, content=body, timeout=60)
                   for url in (cluster.url, direct.url)]
            assert got[0].status_code == got[1].status_code, (path, got[0].text, got[1].text)
            assert got[0].headers["content-type"] == got[1].headers["content-type"], path
            if got[1].status_code >= 400:
                assert got[0].json()["error"]["type"] == got[1].json()["error"]["type"], path
        render = httpx.post(cluster.url + "/pose/render", content=image, headers={"Content-Type": "image/jpeg", **AUTH},
                            timeout=60)
        assert render.status_code == 200 and render.content[:2] == b"\xff\xd8"
    finally:
        direct.stop()


def test_both_replicas_serve(cluster: ServerProcess, bus_path: Path) -> None:
    image, seen = bus_path.read_bytes(), set()
    live = {e["replica"] for e in wait_replicas(cluster.url, 2, 60)}
    with httpx.Client() as client:
        for _ in range(10):
            threads = [threading.Thread(target=lambda: seen.add(pose(cluster.url, image, client).headers["x-replica"]))
                       for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if seen == live:
                break
    assert seen == live, (seen, live)


def test_a_stream_survives_another_replicas_failure(cluster: ServerProcess, bus_path: Path) -> None:
    from websockets.sync.client import connect

    image = bus_path.read_bytes()
    live = wait_replicas(cluster.url, 2, 120)
    with connect(cluster.url.replace("http://", "ws://") + "/ws/pose", additional_headers=AUTH, max_size=None,
                 open_timeout=30) as ws:
        mine = ws.response.headers["x-replica"]
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"

        def one_frame() -> dict:
            ws.send(image)
            while True:
                msg = json.loads(ws.recv(timeout=60))
                if msg["type"] == "pose":
                    return msg
        first = one_frame()
        kill_replica(next(e["replica"] for e in live if e["replica"] != mine))
        later = [one_frame() for _ in range(4)]
        assert all(len(m["persons"]) == len(first["persons"]) for m in later)
        assert {p.get("track_id") for p in later[-1]["persons"]} == {p.get("track_id") for p in first["persons"]}
    wait_replicas(cluster.url, 2, 180)  # the controller brought the killed replica back


def test_killing_a_replica_under_load_loses_nothing(cluster: ServerProcess, bus_path: Path) -> None:
    image = bus_path.read_bytes()
    live = wait_replicas(cluster.url, 2, 180)
    outcomes: list[tuple[int, str | None, str | None]] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client() as http:
            for _ in range(n):
                try:
                    r = pose(cluster.url, image, http)
                    row = (r.status_code, r.headers.get("retry-after"), r.headers.get("x-attempts"))
                except httpx.HTTPError as exc:  # a hang (timeout) or a dropped connection: a lost request
                    row = (-1, type(exc).__name__, None)
                with lock:
                    outcomes.append(row)

    threads = [threading.Thread(target=client, args=(6,)) for _ in range(4)]
    for t in threads:
        t.start()
    while len(outcomes) < 4:
        time.sleep(0.05)
    kill_replica(live[0]["replica"])
    for t in threads:
        t.join(300)
    statuses = [o[0] for o in outcomes]
    retried = sum(1 for o in outcomes if o[0] == 200 and o[2] != "1")
    print(f"\n{len(outcomes)} requests: {statuses.count(200)} answered ({retried} of them sent again after the "
          f"kill), {statuses.count(503)} x 503")
    assert len(outcomes) == 24 and set(statuses) <= {200, 503}, outcomes
    assert all(o[1] for o in outcomes if o[0] == 503)  # Retry-After on every 503
    assert wait_replicas(cluster.url, 2, 180)  # and the replica comes back
    assert pose(cluster.url, image).status_code == 200


def test_an_eval_job_is_answered_for_by_every_replica(cluster: ServerProcess) -> None:
    r = httpx.post(cluster.url + "/eval/coco", json={"dataset": "coco-mini", "split": "train2017", "max_images": 4},
                   headers=AUTH, timeout=30)
    assert r.status_code == 202, r.text
    job_id, answered_by = r.json()["id"], set()
    deadline = time.time() + 240
    while time.time() < deadline:
        got = httpx.get(f"{cluster.url}/eval/{job_id}", headers=AUTH, timeout=30)
        assert got.status_code == 200, got.text
        answered_by.add(got.headers["x-replica"])
        if got.json()["state"] in ("done", "failed") and len(answered_by) == 2:
            break
        time.sleep(0.2)
    job = got.json()
    assert job["state"] == "done" and job["result"]["table"]["AP"] >= 0, job
    assert len(answered_by) == 2  # the job ran on one replica; both answered for it
    listed = httpx.get(cluster.url + "/eval", headers=AUTH, timeout=30).json()["jobs"]
    assert job_id in [j["id"] for j in listed]


def test_an_eval_job_is_cancelled_from_any_replica(cluster: ServerProcess) -> None:
    """DELETE /eval/{id} reaches one replica; the job stops wherever it runs (a flag in the shared store)."""
    r = httpx.post(cluster.url + "/eval/coco", json={"dataset": "coco-mini", "split": "train2017", "flip": True},
                   headers=AUTH, timeout=30)
    job_id = r.json()["id"]
    deadline = time.time() + 120
    while (job := httpx.get(f"{cluster.url}/eval/{job_id}", headers=AUTH, timeout=30).json())["progress"]["done"] < 1:
        assert time.time() < deadline and job["state"] in ("queued", "running"), job
        time.sleep(0.2)
    answers = [httpx.delete(f"{cluster.url}/eval/{job_id}", headers=AUTH, timeout=30) for _ in range(2)]
    assert answers[0].status_code in (200, 202), answers[0].text
    deadline = time.time() + 30
    while (job := httpx.get(f"{cluster.url}/eval/{job_id}", headers=AUTH, timeout=30).json())["state"] == "running":
        assert time.time() < deadline, job
        time.sleep(0.2)
    print(f"\nDELETE answered by {[a.headers['x-replica'] for a in answers]}: {[a.status_code for a in answers]}")
    assert job["state"] == "cancelled" and job["progress"]["done"] < job["progress"]["total"], job


@pytest.mark.skipif(not PROMETHEUS.exists(), reason="/usr/bin/prometheus not installed")
def test_prometheus_scrapes_every_replica(cluster: ServerProcess, bus_path: Path,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    live = wait_replicas(cluster.url, 2, 180)
    key_file = tmp_path_factory.mktemp("secret") / "api_key"
    key_file.write_text(KEY)
    prom = LivePrometheus(tmp_path_factory.mktemp("prom"), cluster.port, key_file, cluster=True)
    try:
        image = bus_path.read_bytes()
        deadline = time.time() + 60
        while time.time() < deadline:
            up = prom.query('up{job="lgm-pose"}')
            if len(up) == 2 and all(s["value"][1] == "1" for s in up):
                break
            time.sleep(1)
        assert {s["metric"]["replica"] for s in up} == {e["replica"] for e in live}, up
        served = 'sum(lgm_pose_request_duration_seconds_count{route="/pose"})'  # over every replica
        time.sleep(3)
        before = float(prom.query(served)[0]["value"][1])
        send_traffic(cluster.url, image, 6)  # 6 answered + 3 refused: 9 requests on /pose
        assert websocket_stream(cluster.url, image)
        deadline, after = time.time() + 20, before
        while time.time() < deadline and after < before + 9:
            time.sleep(1)
            after = float(prom.query(served)[0]["value"][1])
        time.sleep(2)
        after = float(prom.query(served)[0]["value"][1])
        assert after - before == 9, (before, after)  # each request counted once, by the replica that served it
        for expr in dashboard_exprs():
            assert prom.query(to_promql(expr)), f"no data: {expr}"
    finally:
        prom.stop()


def test_kuberay_manifest_builds_the_application() -> None:
    """deploy/kuberay/rayservice.yaml: its Serve config imports our builder, and its args are valid settings."""
    import importlib

    import yaml
    from ray.serve import Application

    from app.cluster.settings import ClusterSettings

    manifest = yaml.safe_load((REPO / "deploy" / "kuberay" / "rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService"
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    (app_config,) = serve_config["applications"]
    module, _, attr = app_config["import_path"].partition(":")
    build = getattr(importlib.import_module(module), attr)
    assert isinstance(build(app_config["args"]), Application)
    cluster = ClusterSettings(**app_config["args"]["cluster"])
    Settings(**app_config["args"]["settings"])
    groups = {g["groupName"]: g for g in manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"} and groups["gpu"]["rayStartParams"]["num-gpus"] == "1"
    pod_cpus = float(groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
    assert pod_cpus >= cluster.cpus_per_replica  # a CPU pod holds at least one pose replica
