"""Draw boxes and skeletons with OpenCV and encode the result as JPEG."""

from __future__ import annotations

import cv2
import numpy as np

from app.pipeline.results import PoseResult


def render(image: np.ndarray, result: PoseResult, skeleton: tuple[tuple[int, int], ...], kpt_thr: float,
           quality: int = 90) -> bytes:
    """JPEG bytes of `image` with each person's box, keypoints at or above `kpt_thr` and their limbs."""
    canvas = image.copy()
    thick = max(1, round(max(canvas.shape[:2]) / 400))
    p = result.poses
    for i in range(len(p)):
        x1, y1, x2, y2 = (int(round(v)) for v in p.boxes[i])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 200, 0), thick)
        cv2.putText(canvas, f"{p.box_scores[i]:.2f}/{p.pose_scores[i]:.2f}", (x1, max(12, y1 - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, (0, 200, 0), thick)
        pts = [(int(round(x)), int(round(y))) for x, y in p.keypoints[i]]
        visible = p.joint_scores[i] >= kpt_thr
        for a, b in skeleton:
            if visible[a] and visible[b]:
                cv2.line(canvas, pts[a], pts[b], (255, 128, 0), thick, cv2.LINE_AA)
        for j, pt in enumerate(pts):
            if visible[j]:
                cv2.circle(canvas, pt, thick + 2, (0, 0, 255), -1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
