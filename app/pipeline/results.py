"""One results object per image, as Ultralytics' `Results`: the poses as arrays (`model.inference.topdown.Poses`,
after the one scoring rule), the image size and the stage timings. Every consumer renders from it: the JSON
answer of POST /pose, COCO result records (`?format=coco`, as `lgm-pose eval` writes them), a stream's pose
message and the JPEG of /pose/render."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.data.datasets import DatasetInfo
from model.eval.coco import to_records
from model.inference.topdown import Poses


@dataclass
class PoseResult:
    """The persons of one image: `poses.boxes` x1y1x2y2, `poses.keypoints` (n, K, 2) image pixels and scores."""

    width: int
    height: int
    poses: Poses
    timing_ms: dict[str, float] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)
    source: str = "lgm"  # the pose source of every person (app.pipeline.sources)
    source_note: str | None = None  # why `source` is not the one asked (client boxes: no detector keypoints)

    def __len__(self) -> int:
        return len(self.poses)

    def to_json(self, dataset: DatasetInfo) -> dict[str, Any]:
        """POST /pose's answer (app.pipeline.schemas.PoseResponse)."""
        p, names = self.poses, dataset.joint_names
        persons = [{"box": [float(v) for v in p.boxes[i]], "box_score": float(p.box_scores[i]),
                    "pose_score": float(p.pose_scores[i]), "score": float(p.scores[i]), "source": self.source,
                    "keypoints": [{"name": names[j], "x": float(x), "y": float(y), "score": float(s)}
                                  for j, ((x, y), s) in enumerate(zip(p.keypoints[i], p.joint_scores[i], strict=True))]}
                   for i in range(len(p))]
        return {"image": {"width": self.width, "height": self.height}, "persons": persons,
                "skeleton": [tuple(e) for e in dataset.skeleton], "timing_ms": self.timing_ms,
                "batch_sizes": self.batch_sizes, "source": self.source, "source_note": self.source_note}

    def to_coco(self, image_id: int) -> list[dict[str, Any]]:
        """COCO keypoint result records (app.pipeline.schemas.CocoRecord), as `lgm-pose eval` writes them."""
        p = self.poses
        if not len(p):
            return []
        records = to_records([image_id] * len(p), p.keypoints, p.joint_scores, [float(s) for s in p.scores])
        out = []
        for rec, box in zip(records, p.boxes, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            out.append({"image_id": rec["image_id"], "category_id": rec["category_id"],
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "keypoints": rec["keypoints"], "score": rec["score"]})
        return out

    def to_stream(self, frame_id: int, track_ids: Sequence[int], keypoints: Sequence[np.ndarray], latency_ms: float,
                  smoothing: bool) -> dict[str, Any]:
        """A stream's pose message: each person with its track id and its keypoints (smoothed or these)."""
        p = self.poses
        persons = [{"track_id": tid, "box": [round(float(v), 2) for v in p.boxes[i]],
                    "box_score": round(float(p.box_scores[i]), 4), "pose_score": round(float(p.pose_scores[i]), 4),
                    "source": self.source,
                    "keypoints": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                                  for (x, y), s in zip(keypoints[i], p.joint_scores[i], strict=True)]}
                   for i, tid in enumerate(track_ids)]
        return {"type": "pose", "frame_id": frame_id, "width": self.width, "height": self.height, "persons": persons,
                "latency_ms": round(latency_ms, 2), "timing_ms": self.timing_ms, "smoothing": smoothing,
                "source": self.source, "source_note": self.source_note}
