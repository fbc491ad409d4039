"""The service on a local Ray Serve cluster (`lgm-pose serve --cluster local`, 2 pose replicas), for real.

Every route, a WebSocket stream and POST/DELETE /eval answer through the gateway as from a direct server; both
replicas serve; killing a replica during a burst loses no request (every one answered 200, those it held sent
again) and the replica comes back; a WebSocket stream stays on its replica while another one dies; an
evaluation job is answered for by every replica and cancelled from the one that does not run it (shared job
store); the real Prometheus finds every replica through the gateway's service discovery and every dashboard
query returns data for the cluster.
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
           "LGM_POSE_CLUSTER_RETRIES": "3", "RAY_DEDUP_LOGS": "0",
           # one runtime for the cluster and the direct server it is compared with (auto's timed trial may differ)
           "LGM_POSE_BACKEND": "onnxruntime", "LGM_POSE_DETECTOR_BACKEND": "onnxruntime"}
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


def kill_replica(replica: str) -> float:
    """ray.kill on one pose replica's actor (the Serve controller starts a new one); the time of the kill."""
    import ray

    ray.init(address="auto", namespace="serve", log_to_driver=False)
    try:
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if "PoseWorker" in a["name"] and a["name"].endswith(replica)]
        assert len(names) == 1, names
        actor = ray.get_actor(names[0], namespace="serve")
        killed_at = time.time()
        ray.kill(actor, no_restart=True)
        return killed_at
    finally:
        ray.shutdown()  # this test process must not stay a driver of a cluster that goes away with its fixture


def pose(url: str, image: bytes, client: httpx.Client | None = None) -> httpx.Response:
    client = client or httpx
    return client.post(url + "/pose", content=image, headers={"Content-Type": "image/jpeg", **AUTH}, timeout=90)


def stream_one_frame(url: str, image: bytes) -> tuple[dict, dict]:
    """WS /ws/pose: the hello message and the pose answer to one frame."""
    from websockets.sync.client import connect

    with connect(url.replace("http://", "ws://") + "/ws/pose", additional_headers=AUTH, max_size=None,
                 open_timeout=30) as ws:
        hello = json.loads(ws.recv(timeout=30))
        assert hello["type"] == "hello", hello
        ws.send(image)
        while (msg := json.loads(ws.recv(timeout=60)))["type"] != "pose":
            assert msg["type"] != "error", msg
    return hello, msg


def test_routes_answer_as_they_do_directly(cluster: ServerProcess, bus_path: Path, data_root: Path) -> None:
    image = bus_path.read_bytes()
    direct = LiveServer(Settings(api_key=KEY, torch_threads=1, jobs_dir=None, data_root=data_root,
                                  backend="onnxruntime", detector_backend="onnxruntime"))
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
        for i, (method, path, headers, body) in enumerate(checks):
            given = (f"check-{i}", None, "not plain!" * 10)[i % 3]  # the client's id, none, or one replaced
            headers = {**headers, **({"X-Request-ID": given} if given else {})}
            got = [httpx.request(method, url + path, headers=headers, content=body, timeout=60)
                   for url in (cluster.url, direct.url)]
            assert got[0].status_code == got[1].status_code, (path, got[0].text, got[1].text)
            assert got[0].headers["content-type"] == got[1].headers["content-type"], path
            for g in got:  # one X-Request-ID: the client's when plain, else a new one, and the error body's
                header = g.headers.get_list("x-request-id")
                assert len(header) == 1 and (header[0] == given) == (i % 3 == 0), (path, header)
                if g.status_code >= 400:
                    assert g.json()["error"]["request_id"] == header[0], (path, header, g.text)
            if got[1].status_code >= 400:
                assert got[0].json()["error"]["type"] == got[1].json()["error"]["type"], path
        # errors the gateway makes itself (a body past the limit, refused before any replica sees it): the same
        # body, with the client's request id or a new one, as from a direct server
        big = b"\xff\xd8" + b"x" * (Settings().max_upload_bytes + 256 * 1024)
        for rid in ("client-id-413", None):
            headers = {"Content-Type": "image/jpeg", **AUTH, **({"X-Request-ID": rid} if rid else {})}
            got = [httpx.post(url + "/pose", content=big, headers=headers, timeout=60)
                   for url in (cluster.url, direct.url)]
            print(f"\n413 with X-Request-ID {rid}: {[(g.headers.get_list('x-request-id'), g.text) for g in got]}")
            assert "x-replica" not in got[0].headers and [g.status_code for g in got] == [413, 413], got
            for g in got:
                assert set(g.json()) == {"error"} and g.json()["error"]["type"] == "too_many_bytes", g.text
                body_id = g.json()["error"]["request_id"]  # the client's, or one made for it, as in the header
                assert g.headers.get_list("x-request-id") == [body_id] and body_id == (rid or body_id), g.headers
        render = httpx.post(cluster.url + "/pose/render", content=image, headers={"Content-Type": "image/jpeg", **AUTH},
                            timeout=60)
        assert render.status_code == 200 and render.content[:2] == b"\xff\xd8"
        # a WebSocket stream: the same hello and the same poses
        streams = [stream_one_frame(url, image) for url in (cluster.url, direct.url)]
        assert streams[0][0] == streams[1][0]  # hello: joints, skeleton, parameters
        assert len(streams[0][1]["persons"]) == len(streams[1][1]["persons"]) >= 4
        np.testing.assert_allclose(*[[np.array(p["keypoints"])[:, :2] for p in s[1]["persons"]] for s in streams],
                                   atol=0.5)
        # POST /eval (a bad body, then a job), GET it, DELETE it twice: the same statuses and states
        bad = [httpx.post(url + "/eval/coco", json={"dataset": "no-such-set"}, headers=AUTH, timeout=30)
               for url in (cluster.url, direct.url)]
        assert bad[0].status_code == bad[1].status_code == 400, (bad[0].text, bad[1].text)
        assert bad[0].json()["error"]["type"] == bad[1].json()["error"]["type"]
        body = {"dataset": "coco-mini", "split": "train2017", "flip": True}
        calls = []
        for url in (cluster.url, direct.url):
            posted = httpx.post(url + "/eval/coco", json=body, headers=AUTH, timeout=30)
            assert posted.status_code == 202, posted.text
            job_url = f"{url}/eval/{posted.json()['id']}"
            deadline = time.time() + 120
            while (got := httpx.get(job_url, headers=AUTH, timeout=30)).json()["progress"]["done"] < 1:
                assert got.status_code == 200 and got.json()["state"] in ("queued", "running") and \
                    time.time() < deadline, got.text
                time.sleep(0.2)
            deleted = [httpx.delete(job_url, headers=AUTH, timeout=30) for _ in range(2)]
            calls.append([(posted.status_code, sorted(posted.json()), posted.json()["state"])]
                         + [(r.status_code, sorted(r.json()), r.json()["state"]) for r in (got, *deleted)])
        assert calls[0] == calls[1], calls
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


def test_the_pose_source_passes_through(cluster: ServerProcess, bus_path: Path) -> None:
    """`pose_source` reaches the replicas unchanged (query and stream control), and so does the answer's source."""
    from websockets.sync.client import connect

    image, headers = bus_path.read_bytes(), {"Content-Type": "image/jpeg", **AUTH}
    for source in ("lgm", "detector", "fused"):
        r = httpx.post(cluster.url + "/pose", params={"pose_source": source}, content=image, headers=headers,
                       timeout=90)
        assert r.status_code == 200 and r.headers["x-pose-source"] == source, r.text
        assert {p["source"] for p in r.json()["persons"]} == {source}
    refused = httpx.post(cluster.url + "/pose", params={"pose_source": "detector", "boxes": "[[0, 0, 50, 90]]"},
                         content=image, headers=headers, timeout=90)
    assert refused.status_code == 422 and refused.json()["error"]["type"] == "bad_parameter", refused.text
    with connect(cluster.url.replace("http://", "ws://") + "/ws/pose", additional_headers=AUTH, max_size=None,
                 open_timeout=30) as ws:
        assert "fused" in json.loads(ws.recv(timeout=30))["pose_sources"]
        ws.send(json.dumps({"pose_source": "fused"}))
        assert json.loads(ws.recv(timeout=30))["params"]["pose_source"] == "fused"
        ws.send(image)
        while (msg := json.loads(ws.recv(timeout=60)))["type"] != "pose":
            assert msg["type"] != "error", msg
    assert msg["source"] == "fused" and {p["source"] for p in msg["persons"]} == {"fused"}


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
    """4 clients send /pose back to back from before the kill until 8 requests started after it: every one is
    answered 200, those the dead replica held were sent again (X-Attempts > 1), and the kill landed while
    requests were in flight."""
    image = bus_path.read_bytes()
    live = wait_replicas(cluster.url, 2, 180)
    victim = live[0]["replica"]
    rows: list[tuple[float, float, int, str | None, str | None]] = []  # start, end, status, attempts, replica
    killed_at: list[float] = []
    lock = threading.Lock()

    def after_kill() -> int:
        return sum(1 for r in rows if killed_at and r[0] > killed_at[0])

    def client() -> None:
        with httpx.Client() as http:
            while len(rows) < 400 and after_kill() < 8:
                began = time.time()
                try:
                    r = pose(cluster.url, image, http)
                    row = (began, time.time(), r.status_code, r.headers.get("x-attempts"), r.headers.get("x-replica"))
                except httpx.HTTPError as exc:  # a hang (timeout) or a dropped connection: a lost request
                    row = (began, time.time(), -1, type(exc).__name__, None)
                with lock:
                    rows.append(row)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 120
    while len(rows) < 4 or not any(r[4] == victim for r in rows):  # Ray's router may favour one replica at first
        assert time.time() < deadline, "the victim replica never served a request"
        time.sleep(0.05)
    killed_at.append(kill_replica(victim))
    for t in threads:
        t.join(300)
    kill = killed_at[0]
    in_flight = [r for r in rows if r[0] < kill < r[1]]
    retried = [r for r in rows if r[3] != "1"]
    print(f"\n{len(rows)} requests: {sum(r[2] == 200 for r in rows)} answered 200, {len(in_flight)} in flight at the "
          f"kill, {len(retried)} sent again (X-Attempts {[r[3] for r in retried]}), {after_kill()} started after it")
    assert not any(t.is_alive() for t in threads)
    assert [r for r in rows if r[2] != 200] == [], "requests not answered 200"
    assert any(r[4] == victim for r in rows if r[1] < kill), "the killed replica served nothing before the kill"
    assert len(in_flight) >= 1 and after_kill() >= 8, "the kill did not land during the burst"
    assert retried and all(r[4] != victim for r in retried), retried  # sent again, to the replica that lives
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
    """DELETE /eval/{id} reaches a replica that does not run the job; the job stops where it runs (a flag in the
    shared store). Every call's status is checked; the replica that took each DELETE is named."""
    def get(url: str) -> httpx.Response:
        r = httpx.get(url, headers=AUTH, timeout=30)
        assert r.status_code == 200, (url, r.status_code, r.text)
        return r

    r = httpx.post(cluster.url + "/eval/coco", json={"dataset": "coco-mini", "split": "train2017", "flip": True},
                   headers=AUTH, timeout=30)
    assert r.status_code == 202, r.text
    job_id, owner = r.json()["id"], r.headers["x-replica"]  # the replica that took the job runs it
    deadline = time.time() + 120
    while (job := get(f"{cluster.url}/eval/{job_id}").json())["progress"]["done"] < 1:
        assert time.time() < deadline and job["state"] in ("queued", "running"), job
        time.sleep(0.2)
    assert job["state"] == "running", job
    (other,) = [e for e in get(cluster.url + "/cluster/replicas").json()["replicas"] if e["replica"] != owner]
    # the first DELETE straight to the replica without the job, then through the gateway (idempotent)
    answers = [httpx.delete(f"{other['url']}/eval/{job_id}", headers=AUTH, timeout=30),
               httpx.delete(f"{cluster.url}/eval/{job_id}", headers=AUTH, timeout=30)]
    print(f"\njob on {owner}; DELETE to {other['replica']} -> {answers[0].status_code} {answers[0].text[:160]}; "
          f"through the gateway, answered by {answers[1].headers.get('x-replica')} -> {answers[1].status_code} "
          f"{answers[1].text[:160]}")
    assert answers[0].status_code in (200, 202) and answers[0].json()["cancel_requested"], answers[0].text
    assert answers[1].status_code in (200, 202) and answers[1].headers["x-replica"] in (owner, other["replica"])
    deadline = time.time() + 30
    while (job := get(f"{cluster.url}/eval/{job_id}").json())["state"] == "running":
        assert time.time() < deadline, job
        time.sleep(0.2)
    assert job["state"] == "cancelled" and job["progress"]["done"] < job["progress"]["total"], job
    assert get(f"{other['url']}/eval/{job_id}").json()["state"] == "cancelled"
    again = httpx.delete(f"{cluster.url}/eval/{job_id}", headers=AUTH, timeout=30)
    assert again.status_code == 200 and again.json()["state"] == "cancelled", again.text  # as a direct server


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
        def served() -> float:  # /pose requests over every replica (no series yet when none was served: 0)
            found = prom.query('sum(lgm_pose_request_duration_seconds_count{route="/pose"})')
            return float(found[0]["value"][1]) if found else 0.0

        time.sleep(3)
        before = served()
        send_traffic(cluster.url, image, 6)  # 6 answered + 3 refused: 9 requests on /pose
        assert websocket_stream(cluster.url, image)
        deadline, after = time.time() + 20, before
        while time.time() < deadline and after < before + 9:
            time.sleep(1)
            after = served()
        time.sleep(2)
        after = served()
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
