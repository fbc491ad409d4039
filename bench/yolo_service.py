"""YOLO11n-pose alone behind HTTP: the smallest service a user could write instead (`lgm-pose bench service`'s
fair baseline for the `detector` source: the same HTTP round trip, decode and detector, nothing else).

`python -m bench.yolo_service PORT`: POST /pose with a JPEG body answers the persons' boxes, scores and
keypoints as JSON; the detector is the service's own (same ONNX export, runtime, input size and threads).
"""

# no `from __future__ import annotations`: FastAPI reads the route's annotations (Request) at run time
import asyncio
import os
import sys

import numpy as np
from fastapi import FastAPI, Request


def create_app() -> FastAPI:
    import cv2

    from app.core.settings import Settings
    from model.inference.loader import build_detector

    s = Settings()
    detector = build_detector(s.resolved_detector_weights(), "cpu", s.detector_imgsz, backend="onnxruntime",
                              threads=s.torch_threads)
    app = FastAPI()

    def predict(body: bytes) -> dict:
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        boxes, scores, keypoints = detector.detect_with_keypoints(image, s.detector_conf, s.max_persons)
        return {"persons": [{"box": b.tolist(), "score": float(c), "keypoints": k.tolist()}
                            for b, c, k in zip(boxes, scores, keypoints, strict=True)]}

    @app.get("/readyz")
    async def readyz() -> dict:
        return {"ready": True}

    @app.post("/pose")
    async def pose(request: Request) -> dict:
        return await asyncio.to_thread(predict, await request.body())

    return app


def main() -> None:
    """`python -m bench.yolo_service PORT`."""
    import uvicorn

    os.environ.setdefault("YOLO_OFFLINE", "1")
    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")


if __name__ == "__main__":
    main()
