"""Offline evaluation endpoints on a real uvicorn server (httpx client), data root = a tmp dir.

The tmp data root holds small COCO-format subsets of coco-mini (annotation json filtered and written in tmp,
images symlinked to the shared data, never copied), a malformed set and a symlink that leads outside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

from live_server import LiveServer  # noqa: E402

from app.core.settings import DEFAULT_POSE_WEIGHTS, Settings  # noqa: E402
from model.eval.coco import STAT_NAMES  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable  # the interpreter running the tests, whatever install it is


def test_a_job_comes_back_interrupted_after_a_crash(checkpoint: Path, eval_root: Path, tmp_path: Path) -> None:
    """`kill -9` on `lgm-pose serve` mid-job (nothing recorded at shutdown), a new server on the same store: the
    job is `interrupted` with its request, and a new job runs to the end."""
    import signal
    import sqlite3

    from bench.server_process import ServerProcess

    env = {"LGM_POSE_POSE_WEIGHTS": str(checkpoint), "LGM_POSE_DATA_ROOT": str(eval_root), "LGM_POSE_BACKEND": "torch",
           "LGM_POSE_DEVICE": "cpu", "LGM_POSE_TORCH_THREADS": "2", "LGM_POSE_JOBS_DIR": str(tmp_path / "jobs")}
    first = ServerProcess(env, cwd=REPO, log=tmp_path / "first.log")
    try:
        long_id = start(first.url, {"dataset": "long", "flip": True})
        running = wait_for(first.url, long_id, ("running",), min_done=1, timeout=60)
        os.kill(first.pid, signal.SIGKILL)
        assert first.proc.wait(10) == -signal.SIGKILL
    finally:
        first.stop()
    with sqlite3.connect(tmp_path / "jobs" / "jobs.sqlite3") as db:  # what the crash left: a running job
        (record,) = db.execute("SELECT record FROM jobs WHERE id = ?", (long_id,)).fetchone()
    assert json.loads(record)["state"] == "running"
    second = ServerProcess(env, cwd=REPO, log=tmp_path / "second.log")
    try:
        job = httpx.get(f"{second.url}/eval/{long_id}", timeout=10)
        assert job.status_code == 200, job.text
        job = job.json()
        assert job["state"] == "interrupted" and "submit" in job["error"], job
        assert job["request"] == running["request"] and job["request"]["dataset"] == "long"
        listed = {j["id"]: j["state"] for j in httpx.get(f"{second.url}/eval", timeout=10).json()["jobs"]}
        assert listed[long_id] == "interrupted"
        done = wait_for(second.url, start(second.url, {"dataset": "mini", "max_images": 2}))
        assert done["state"] == "done" and done["result"]["table"]["AP"] >= 0, done
    finally:
        second.stop()


def _coco_subset(src: dict, ids: list[int], dest: Path, split: str, image_dir: Path) -> None:
    """DEST/annotations/person_keypoints_SPLIT.json for `ids`, DEST/images/SPLIT/<symlinks to the images>."""
    wanted = set(ids)
    data = dict(src, images=[i for i in src["images"] if i["id"] in wanted],
                annotations=[a for a in src["annotations"] if a["image_id"] in wanted])
    (dest / "annotations").mkdir(parents=True)
    (dest / "images" / split).mkdir(parents=True)
    for info in data["images"]:
        (dest / "images" / split / info["file_name"]).symlink_to(image_dir / info["file_name"])
    (dest / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(data))


@pytest.fixture(scope="module")
def eval_root(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    mini = data_root / "coco-mini"
    src = json.loads((mini / "annotations" / "person_keypoints_train2017.json").read_text())
    image_dir = mini / "images" / "train2017"
    people: dict[int, int] = {}
    for a in src["annotations"]:
        if not a["iscrowd"] and a["num_keypoints"] > 0:
            people[a["image_id"]] = people.get(a["image_id"], 0) + 1
    small = sorted(i for i, n in people.items() if n <= 3)[:6]
    root = tmp_path_factory.mktemp("eval_root")
    _coco_subset(src, small, root / "mini", "val", image_dir)
    # a 7th image that cannot be read: reported in skipped_images, its person counted as missed
    ann_file = root / "mini" / "annotations" / "person_keypoints_val.json"
    data = json.loads(ann_file.read_text())
    data["images"].append(dict(data["images"][0], id=999_000_001, file_name="broken.jpg"))
    data["annotations"].append(dict(data["annotations"][0], id=999_000_001, image_id=999_000_001))
    ann_file.write_text(json.dumps(data))
    (root / "mini" / "images" / "val" / "broken.jpg").write_bytes(b"not a jpeg at all")
    _coco_subset(src, sorted(people), root / "long", "val", image_dir)  # every image with people (long job)
    (root / "bad" / "annotations").mkdir(parents=True)
    (root / "bad" / "images" / "val").mkdir(parents=True)
    (root / "bad" / "annotations" / "person_keypoints_val.json").write_text('{"images": [{"id": 1,, oops')
    (root / "escape").symlink_to(mini)  # a symlink leading outside the data root
    # file names that leave the image folder: an existing file outside the root, a missing one, '..'
    names = [str(image_dir / src["images"][0]["file_name"]), "/no/such/file.jpg", "../../mini/images/val/x.jpg"]
    data = json.loads(ann_file.read_text())
    data = dict(data, images=[dict(data["images"][0], id=900 + i, file_name=n) for i, n in enumerate(names)],
                annotations=[dict(data["annotations"][0], id=900 + i, image_id=900 + i) for i in range(3)])
    (root / "names" / "annotations").mkdir(parents=True)
    (root / "names" / "images" / "val").mkdir(parents=True)
    (root / "names" / "annotations" / "person_keypoints_val.json").write_text(json.dumps(data))
    (root / "outside_dets.json").symlink_to("/etc/hostname")
    from model.data.mpii_convert import convert_to_mpii  # LSPET in MPII format (tested in test_mpii_convert)
    convert_to_mpii(data_root / "lspet", None, root / "lspet_mpii")
    return root


@pytest.fixture(scope="module")
def checkpoint(random_checkpoint: Path) -> Path:
    """The shipped trained weights (so the compared AP tables are not all zero), else random ones."""
    return DEFAULT_POSE_WEIGHTS if DEFAULT_POSE_WEIGHTS.is_file() else random_checkpoint


@pytest.fixture(scope="module")
def server(checkpoint: Path, eval_root: Path):
    # torch backend: the same forward code as `lgm-pose eval` (the CPU default is onnxruntime)
    srv = LiveServer(Settings(pose_weights=checkpoint, data_root=eval_root, backend="torch", device="cpu",
                              max_wait_ms=20, torch_threads=2))
    yield srv
    srv.stop()


def start(url: str, body: dict, kind: str = "coco") -> str:
    r = httpx.post(f"{url}/eval/{kind}", json=body, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def wait_for(url: str, job_id: str, states: tuple[str, ...] = ("done", "failed", "cancelled"),
             timeout: float = 150, min_done: int = 0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = httpx.get(f"{url}/eval/{job_id}", timeout=10).json()
        if job["state"] in states and job["progress"]["done"] >= min_done:
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} still {job}")


def test_coco_gt_matches_cli(server: LiveServer, eval_root: Path, checkpoint: Path, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    job = wait_for(server.url, start(server.url, {"dataset": "mini", "boxes": "gt", "flip": False}))
    service_s = time.perf_counter() - t0
    assert job["state"] == "done", job
    result = job["result"]
    assert job["progress"]["done"] == job["progress"]["total"] == result["counts"]["persons"]
    assert result["skipped_images"] == [{"image": "broken.jpg", "reason": "unreadable image"}]
    assert result["throughput"]["persons_per_s"] > 0 and result["ann_file"] == "mini/annotations/" \
        "person_keypoints_val.json"
    t0 = time.perf_counter()
    out = tmp_path / "x.json"
    proc = subprocess.run([PYTHON, "-m", "app.cli", "eval", "--weights", str(checkpoint), "--data",
                           str(eval_root / "mini"), "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=240)
    cli_s = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(out.read_text())
    ours, theirs = result["table"], cli["table"]
    print(f"\nservice table {ours} ({service_s:.1f} s)\nCLI     table {theirs} ({cli_s:.1f} s)")
    assert set(ours) == set(STAT_NAMES)
    assert {k: round(v, 3) for k, v in ours.items()} == {k: round(v, 3) for k, v in theirs.items()}
    if checkpoint == DEFAULT_POSE_WEIGHTS:
        assert ours["AP50"] > 0  # trained weights: a table with content, not zeros on both sides
    assert result["summary"] == cli["summary"] and result["counts"] == cli["counts"]
    # the keypoints themselves: served results vs the CLI's OUT.keypoints.json
    served = httpx.get(f"{server.url}/eval/{job['id']}/results", timeout=30).json()
    expected = json.loads(Path(cli["results_path"]).read_text())
    assert [r["image_id"] for r in served] == [r["image_id"] for r in expected]
    a = np.array([r["keypoints"] for r in served])
    b = np.array([r["keypoints"] for r in expected])
    print(f"keypoint results bit-identical to the CLI: {served == expected}; max |diff| {np.abs(a - b).max()}")
    np.testing.assert_allclose(a, b, atol=2e-3)
    np.testing.assert_allclose([r["score"] for r in served], [r["score"] for r in expected], rtol=1e-5)


def test_detector_boxes(server: LiveServer) -> None:
    job = wait_for(server.url, start(server.url, {"dataset": "mini", "boxes": "detector", "max_images": 2}))
    assert job["state"] == "done", job
    assert job["result"]["boxes"] == "detector" and job["result"]["detections"] >= 1
    assert set(job["result"]["table"]) == set(STAT_NAMES)


def _pose_p95(url: str, image: bytes, n: int = 10) -> tuple[float, list[float]]:
    times = []
    with httpx.Client(timeout=60) as client:
        for _ in range(n):
            t = time.perf_counter()
            r = client.post(url + "/pose", content=image, headers={"Content-Type": "image/jpeg"})
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
    return float(np.percentile(times, 95)), times


def test_file_names_are_confined_and_reveal_nothing(server: LiveServer) -> None:
    job = wait_for(server.url, start(server.url, {"dataset": "names"}))
    assert job["state"] == "done", job
    reasons = [s["reason"] for s in job["result"]["skipped_images"]]
    assert reasons == ["file name outside the image folder"] * 3  # same answer for the existing file outside


def test_live_pose_not_starved(server: LiveServer, bus_path: Path) -> None:
    image = bus_path.read_bytes()
    _pose_p95(server.url, image, 2)  # warm-up
    idle, idle_times = _pose_p95(server.url, image)
    job_id = start(server.url, {"dataset": "long", "flip": True})
    before = wait_for(server.url, job_id, ("running",), min_done=1, timeout=60)["progress"]["done"]
    busy, busy_times = _pose_p95(server.url, image)
    job = httpx.get(f"{server.url}/eval/{job_id}", timeout=10).json()
    httpx.delete(f"{server.url}/eval/{job_id}", timeout=30)
    print(f"\nPOST /pose p95 idle {idle * 1000:.0f} ms, during eval {busy * 1000:.0f} ms "
          f"(ratio {busy / idle:.2f}); idle {[round(t * 1000) for t in idle_times]} "
          f"during {[round(t * 1000) for t in busy_times]}; eval progress {before} -> {job['progress']['done']} "
          f"of {job['progress']['total']} persons while measuring")
    assert job["state"] == "running", "the evaluation should still run during the measurement"
    assert busy <= 2.0 * idle + 0.25, f"live p95 {busy:.3f} s vs idle {idle:.3f} s"


@pytest.mark.parametrize("body, what", [
    ({"dataset": "../x"}, "dotdot"),
    ({"dataset": "/etc"}, "absolute"),
    ({"dataset": "escape"}, "symlink"),
    ({"dataset": "mini/../../x"}, "nested dotdot"),
    ({"dataset": "mini", "split": "../../etc"}, "split"),
    ({"dataset": "mini", "boxes": "../dets.json"}, "boxes dotdot"),
    ({"dataset": "mini", "boxes": "/etc/hostname"}, "boxes absolute"),
    ({"dataset": "mini", "boxes": "outside_dets.json"}, "boxes symlink"),
])
def test_paths_outside_the_root_rejected(server: LiveServer, body: dict, what: str) -> None:
    for kind in ("coco", "mpii"):
        r = httpx.post(f"{server.url}/eval/{kind}", json=body, timeout=10)
        if kind == "mpii" and "boxes" in body:
            assert r.status_code == 400  # boxes are refused for MPII either way
            continue
        assert r.status_code == 400, (what, r.text)
        assert r.json()["error"]["type"] == "bad_path" and r.json()["error"]["message"], what


def test_missing_dataset_and_bad_body(server: LiveServer) -> None:
    r = httpx.post(f"{server.url}/eval/coco", json={"dataset": "nope"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["type"] == "bad_dataset"
    r = httpx.post(f"{server.url}/eval/coco", json={"dataset": "mini", "max_images": 0}, timeout=10)
    assert r.status_code == 422
    assert httpx.get(f"{server.url}/eval/doesnotexist", timeout=10).status_code == 404


def test_malformed_annotation_fails_job(server: LiveServer) -> None:
    job = wait_for(server.url, start(server.url, {"dataset": "bad"}), timeout=30)
    assert job["state"] == "failed" and job["result"] is None
    assert "malformed annotation" in job["error"] and "JSONDecodeError" in job["error"], job["error"]
    assert "bad/annotations/person_keypoints_val.json" in job["error"]


def eval_mpii_both_ways(url: str, root: Path, weights: Path, out: Path) -> tuple[dict, dict, str]:
    """POST /eval/mpii and `lgm-pose eval --dataset mpii` on the first 40 persons of root/lspet_mpii:holdout:
    the job's result, the CLI's and the CLI's output."""
    job = wait_for(url, start(url, {"dataset": "lspet_mpii", "split": "holdout", "max_images": 40}, "mpii"))
    assert job["state"] == "done", job
    proc = subprocess.run([PYTHON, "-m", "app.cli", "eval", "--dataset", "mpii", "--weights", str(weights),
                           "--data", str(root / "lspet_mpii") + ":holdout", "--max-images", "40",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    return job["result"], json.loads(out.read_text()), proc.stdout


def test_mpii_on_the_served_coco_model_matches_cli(server: LiveServer, eval_root: Path, checkpoint: Path,
                                                   tmp_path: Path) -> None:
    """POST /eval/mpii on a COCO model: PCKh of the mapped joints, the CLI's table exactly."""
    result, cli, stdout = eval_mpii_both_ways(server.url, eval_root, checkpoint, tmp_path / "mpii.json")
    assert "upper_neck, head_top (and Head) not scored" in stdout, stdout
    print(f"\nservice {result['table']}\nCLI     {cli['table']}")
    assert result["model_joints"] == "coco" and result["unscored_joints"] == ["upper_neck", "head_top"]
    assert result["table"]["Head"] is None and result["per_joint"]["head_top"] is None
    assert result["table"]["Mean"] == result["limb_mean"]  # without head joints the Mean is the limbs'
    for key in ("table", "per_joint", "limb_mean", "counts", "summary", "unscored_joints", "head_size"):
        assert result[key] == cli[key], key
    assert result["counts"]["persons"] == 40
    if checkpoint == DEFAULT_POSE_WEIGHTS:
        assert result["table"]["Mean"] > 10  # trained weights find limbs (39 on the whole holdout)


def test_cancel_running_job(server: LiveServer) -> None:
    job_id = start(server.url, {"dataset": "long", "flip": True})
    wait_for(server.url, job_id, ("running",), min_done=1, timeout=60)
    r = httpx.delete(f"{server.url}/eval/{job_id}", timeout=30)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["state"] == "cancelled" and job["cancel_requested"]
    done = job["progress"]["done"]
    assert done < job["progress"]["total"]
    time.sleep(1.5)
    later = httpx.get(f"{server.url}/eval/{job_id}", timeout=10).json()
    assert later["state"] == "cancelled" and later["progress"]["done"] == done  # stopped
    listed = {j["id"]: j["state"] for j in httpx.get(f"{server.url}/eval", timeout=10).json()["jobs"]}
    assert listed[job_id] == "cancelled"
    assert httpx.delete(f"{server.url}/eval/{job_id}", timeout=10).status_code == 200  # idempotent


def test_jobs_and_results_survive_a_restart(checkpoint: Path, eval_root: Path, tmp_path: Path) -> None:
    settings = Settings(pose_weights=checkpoint, data_root=eval_root, backend="torch", device="cpu", max_wait_ms=20,
                        torch_threads=2, jobs_dir=tmp_path / "jobs")
    first = LiveServer(settings)
    try:
        done = wait_for(first.url, start(first.url, {"dataset": "mini", "max_images": 2}))
        assert done["state"] == "done"
        long_id = start(first.url, {"dataset": "long"})
        wait_for(first.url, long_id, ("running",), min_done=1, timeout=60)
    finally:
        first.stop()
    second = LiveServer(settings)
    try:
        again = httpx.get(f"{second.url}/eval/{done['id']}", timeout=10).json()
        assert again["state"] == "done" and again["result"]["table"] == done["result"]["table"]
        results = httpx.get(f"{second.url}/eval/{done['id']}/results", timeout=10)
        assert results.status_code == 200 and isinstance(results.json(), list) and results.json()
        interrupted = httpx.get(f"{second.url}/eval/{long_id}", timeout=10).json()
        assert interrupted["state"] == "interrupted" and "submit" in interrupted["error"]
        assert interrupted["request"]["dataset"] == "long"  # what to submit again
    finally:
        second.stop()
