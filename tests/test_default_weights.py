"""The shipped checkpoint: loads by default and puts the body joints on the right people.

Reference: YOLO11n-pose's own keypoints. Its person boxes are sent to POST /pose as client boxes,
so both models see the same people; over the confident shoulders, hips, knees and ankles of all
persons, the median distance (each in units of its person's box height) must stay under 10%.
Per-person medians are printed: they show where the small-budget checkpoint is still weak.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

from live_server import LiveServer  # noqa: E402

from app.core.settings import Settings  # noqa: E402
from app.pipeline.schemas import ReadyResponse, ServedModel  # noqa: E402
from model.data.datasets import COCO  # noqa: E402
from model.inference.yolo import load_yolo  # noqa: E402

BODY = [COCO.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip",
                                       "left_knee", "right_knee", "left_ankle", "right_ankle")]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server():
    srv = LiveServer(Settings(torch_threads=2))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def yolo():
    return load_yolo()


def test_default_checkpoint_is_the_trained_one(server: LiveServer) -> None:
    model = server.ready["model"]
    assert model["weights"] == "weights/lgm_pose_coco_256x192.pt"  # the default file (shown relative to the repo)
    assert model["weights_loaded"] is True


def test_readyz_says_what_a_client_needs_and_no_more(server: LiveServer) -> None:
    """The shipped checkpoint carries its training record (data paths, run folders): /readyz shows none of it, only
    the documented fields (ReadyResponse), and no path of the serving machine."""
    ready = httpx.get(server.url + "/readyz", timeout=10).json()
    assert set(ready) <= set(ReadyResponse.model_fields) and set(ready["model"]) == set(ServedModel.model_fields)
    assert ready["ready"] is True and ready["pose_source"] in ready["pose_sources"]
    text = json.dumps(ready)
    assert "/work" not in text and "shared" not in text and "runs/" not in text and str(Path.home()) not in text
    assert not any(value.startswith("/") for value in ready["model"].values() if isinstance(value, str))


@pytest.mark.parametrize("image", ["bus.jpg", "zidane.jpg"])
def test_body_joints_agree_with_yolo_pose(server: LiveServer, yolo, image: str, bus_path: Path) -> None:
    path = bus_path.parent / image
    ref = yolo.predict(str(path), conf=0.5, classes=[0], verbose=False)[0]
    boxes = ref.boxes.xyxy.cpu().numpy()
    ref_xy, ref_conf = ref.keypoints.xy.cpu().numpy(), ref.keypoints.conf.cpu().numpy()
    assert len(boxes) >= 2
    with open(path, "rb") as f:
        r = httpx.post(server.url + "/pose", files={"image": (image, f, "image/jpeg")},
                       data={"boxes": json.dumps(boxes.tolist())}, timeout=120)
    assert r.status_code == 200, r.text
    persons = r.json()["persons"]
    assert len(persons) == len(boxes)
    pooled, per_person = [], []
    for person, box, xy, conf in zip(persons, boxes, ref_xy, ref_conf, strict=True):
        ours = np.array([[k["x"], k["y"]] for k in person["keypoints"]])
        sure = [j for j in BODY if conf[j] > 0.5]
        if not sure:
            continue
        dist = np.linalg.norm(ours[sure] - xy[sure], axis=1) / float(box[3] - box[1])
        pooled += dist.tolist()
        per_person.append(round(float(np.median(dist)), 3))
    median, p90, worst = (float(np.percentile(pooled, q)) for q in (50, 90, 100))
    print(f"{image}: body-joint distance / box height median {median:.3f}, p90 {p90:.3f}, max {worst:.3f} over "
          f"{len(pooled)} joints; per person {per_person}")
    # measured (shipped weights, CPU torch): bus median 0.055 / p90 0.199 (22 joints), zidane 0.075 / 0.265 (5);
    # the bounds leave ~20% for another CPU's numerics, and a joint a third of a person off fails the tail
    assert len(per_person) >= 2 and median < 0.09 and p90 < 0.33, (median, p90)
