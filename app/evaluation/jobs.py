"""Offline COCO / MPII evaluation jobs on the live service, at a lower priority than live traffic.

The engine is `lgm-pose eval`'s (evaluate_coco, evaluate_mpii); only the runner differs: `BatcherRunner` sends
the crops through the service's shared batcher at PRIORITY_BACKGROUND, so the served weights are used.
Bounded share for live traffic (POST /pose, WebSocket streams): one worker thread (one job at a time, at most
`max_queued` waiting); eval crops in chunks of at most `max_crops` at background priority (live crops take the
free slots first and wait at most one small eval forward); before each chunk and detector call `LiveGate`
waits while live work is in flight and `grace_s` after it (at most `max_yield_s`); the worker runs niced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.errors import QueueFull
from app.evaluation.job import ENDED, EvalJob, JobState, stored_job
from app.evaluation.runner import BatcherRunner, JobCancelled, LiveGate, evaluate_served_source, live_busy
from app.evaluation.spec import EvalSpec
from app.evaluation.store import JobStore
from app.state import ServiceState

log = logging.getLogger("lgm_pose.eval")
SAVE_EVERY_S = 1.0  # shared store: a running job saves its progress this often
MALFORMED = (json.JSONDecodeError, KeyError, TypeError, AssertionError, IndexError)


class EvalJobManager:
    """Queue + one worker thread; jobs are evaluated one at a time against the service's loaded models."""

    def __init__(self, service: ServiceState, data_root: Path, *, store: JobStore | None = None, max_crops: int = 4,
                 max_queued: int = 8, keep_finished: int = 50, grace_s: float = 0.25, max_yield_s: float = 3.0,
                 shared: bool = False) -> None:
        self.service, self.data_root = service, Path(data_root).resolve()
        self.max_crops, self.max_queued, self.keep_finished = max_crops, max_queued, keep_finished
        self.grace_s, self.max_yield_s = grace_s, max_yield_s
        self.loop: asyncio.AbstractEventLoop | None = None
        self.jobs: dict[str, EvalJob] = {}
        self._queue: queue.Queue[EvalJob | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.store = store
        self.shared = shared and store is not None  # replicas share the store: any of them answers for any job
        self._saved_at: dict[str, float] = {}
        for record in store.load() if store and not self.shared else []:  # earlier runs: unfinished = interrupted
            job = EvalJob.from_record(record)
            if job.state not in ENDED:
                self._finish(job, "interrupted", f"the service stopped while the job was {job.state}; submit its "
                                                  "request again")
            self.jobs[job.id] = job

    def submit(self, spec: EvalSpec) -> EvalJob:
        """Queue a job (binds the running loop; starts the worker on first use); QueueFull beyond `max_queued`."""
        self.loop = asyncio.get_running_loop()
        with self._lock:
            waiting = sum(j.state in ("queued", "running") for j in self.jobs.values())
            if self._stopping or waiting >= self.max_queued:
                raise QueueFull(f"{waiting} evaluation jobs queued or running (limit {self.max_queued})")
            job = EvalJob(id=uuid.uuid4().hex[:12], spec=spec)
            self.jobs[job.id] = job
            self._save(job)
            finished = [j for j in sorted(self.jobs.values(), key=lambda j: j.created) if j.state in ENDED]
            for old in finished[: max(0, len(finished) - self.keep_finished)]:
                self._forget(self.jobs.pop(old.id))
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="eval-jobs", daemon=True)
            self._thread.start()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> EvalJob | None:
        """A job of this replica, else (shared store) another replica's as last saved."""
        job = self.jobs.get(job_id)
        if job is not None or not self.shared:
            return job
        record = self.store.get(job_id)
        return stored_job(record) if record is not None else None

    def list(self) -> list[EvalJob]:
        if self.shared:
            return [self.jobs.get(rec["id"]) or stored_job(rec) for rec in self.store.load()]
        return sorted(self.jobs.values(), key=lambda j: j.created)

    def cancel(self, job: EvalJob) -> bool:
        """Ask a job to stop (a queued one is cancelled at once); False when it already ended done/failed."""
        with self._lock:
            if job.state in ("done", "failed", "interrupted"):
                return False
            if job.id not in self.jobs:  # another replica's: it reads the flag while it runs
                self.store.request_cancel(job.id)
                job.cancel.set()
                return True
            job.cancel.set()
            if job.state == "queued":
                self._finish(job, "cancelled")
        return True

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the worker (bounded wait); with a store, finished jobs and their files stay for the next start and
        a job still running is recorded as interrupted; without one, the jobs' files are deleted."""
        self._stopping = True
        self._queue.put(None)
        for job in list(self.jobs.values()):
            if job.state in ("queued", "running") and self.store is not None:
                self._finish(job, "interrupted", "the service stopped while the job was running; submit its "
                                                 "request again")
            job.cancel.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.store is None:
            for job in list(self.jobs.values()):
                _remove(job.workdir)
        else:
            self.store.close()

    def _save(self, job: EvalJob) -> None:
        if self.store is not None:
            self.store.save(job.to_record())

    def _forget(self, job: EvalJob) -> None:
        if self.store is not None:
            self.store.delete(job.id)
        _remove(job.workdir)

    def _finish(self, job: EvalJob, state: JobState, error: str | None = None) -> None:
        if job.state == "interrupted":  # recorded at shutdown: the worker's late word does not undo it
            return
        job.state, job.error, job.finished = state, error, time.time()
        job.phase = "finished" if state == "done" else state
        self._save(job)

    def _progress(self, job: EvalJob, phase: str) -> Callable[[int, int], None]:
        job.phase, job.done, job.total, job.phase_started = phase, 0, 0, time.perf_counter()

        def update(done: int, total: int) -> None:
            job.done, job.total = done, total
            if self.shared and time.monotonic() - self._saved_at.get(job.id, 0.0) >= SAVE_EVERY_S:
                self._saved_at[job.id] = time.monotonic()  # progress for the other replicas, and a heartbeat
                for own in [job, *(j for j in list(self.jobs.values()) if j.state == "queued")]:
                    self._save(own)  # queued ones too: they are alive while this replica works
                record = self.store.get(job.id)
                if record and record["cancel_requested"]:
                    job.cancel.set()
        return update

    def _work(self) -> None:
        try:  # Linux: a per-thread nice value, so image decoding and cropping yield the CPU to live work
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError) as exc:
            log.debug("could not lower the eval thread priority: %s", exc)
        while (job := self._queue.get()) is not None:
            with self._lock:
                if job.state != "queued":
                    continue
                job.state, job.started = "running", time.time()
                self._save(job)
            try:
                job.result = self._run(job)
                self._finish(job, "cancelled" if job.result.get("cancelled") else "done")
            except JobCancelled:
                self._finish(job, "cancelled")
            except Exception as exc:  # the job fails, the service and the worker stay up
                log.warning("evaluation job %s failed: %s: %s", job.id, type(exc).__name__, exc)
                text = f"{type(exc).__name__}: {exc}".replace(str(self.data_root) + os.sep, "")
                if isinstance(exc, MALFORMED):
                    text = f"malformed annotation or detection file ({self._rel(job.spec.ann_file)}): {text}"
                self._finish(job, "failed", text)

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.data_root)) if path.is_relative_to(self.data_root) else path.name

    def _run(self, job: EvalJob) -> dict[str, Any]:
        from model.eval.coco_engine import evaluate_coco
        from model.eval.pckh import evaluate_mpii

        service, spec = self.service, job.spec
        service.ready_pipeline()  # NotReady before the models are loaded
        if self.loop is None or service.batcher is None or service.meta is None:
            raise RuntimeError("the service is not ready (models loading)")
        gate = LiveGate(lambda: live_busy(service), self.grace_s, self.max_yield_s)
        runner = BatcherRunner(service.batcher, self.loop, service.meta, gate, job.cancel, self.max_crops)
        job.workdir = (self.store.workdir(job.id) if self.store
                       else Path(tempfile.mkdtemp(prefix=f"lgm_pose_eval_{job.id}_")))
        start = time.perf_counter()
        if spec.kind == "coco" and spec.source != "lgm":  # through the service's own pipeline, like POST /pose
            result = evaluate_served_source(service, self.loop, spec, gate, job.cancel,
                                            self._progress(job, "pose"), job.workdir / "keypoints.json")
        elif spec.kind == "mpii":
            result = evaluate_mpii(runner, spec.ann_file, spec.image_dir, spec.flip, self.max_crops,
                                   self._progress(job, "pose"), job.cancel.is_set, max_persons=spec.max_images)
        else:
            boxes = self._detect(job, gate) if spec.boxes == "detector" else spec.boxes
            result = evaluate_coco(runner, spec.ann_file, spec.image_dir, boxes, spec.flip, self.max_crops,
                                   self._progress(job, "pose"), job.cancel.is_set, max_images=spec.max_images,
                                   results_path=job.workdir / "keypoints.json")
            if isinstance(boxes, list):
                result["boxes"], result["detections"] = "detector", len(boxes)
            else:
                result["boxes"] = boxes if boxes == "gt" else self._rel(Path(boxes))
            result["source"] = "lgm"
        result.update(ann_file=self._rel(spec.ann_file), image_dir=self._rel(spec.image_dir))
        result["throughput"].update(wall_seconds=round(time.perf_counter() - start, 3), forwards=runner.forwards,
                                    crops=runner.crops, yielded_to_live_s=round(gate.yielded_s, 3))
        result.pop("results_path", None)  # served by GET /eval/{id}/results instead
        return result

    def _detect(self, job: EvalJob, gate: LiveGate) -> list[dict[str, Any]]:
        """Person boxes of the service's own detector on the images, as COCO detection results."""
        from model.data.images import image_path, read_image
        from model.eval.coco import detection_records, load_coco

        pipeline, coco = self.service.ready_pipeline(), load_coco(job.spec.ann_file)
        ids = sorted(coco.getImgIds())[: job.spec.max_images]
        update = self._progress(job, "detect")
        detections: list[dict[str, Any]] = []
        for n, image_id in enumerate(ids, 1):
            if job.cancel.is_set():
                raise JobCancelled()
            try:
                image = read_image(image_path(job.spec.image_dir, coco.imgs[image_id]["file_name"]))
            except (ValueError, OSError):
                image = None  # the engine reports it in skipped_images
            if image is not None:
                gate.wait(job.cancel)
                boxes, scores, _ = pipeline.detect_blocking(image, job.spec.det_conf, self.service.settings.max_persons)
                detections += detection_records(image_id, boxes, scores)
            update(n, len(ids))
        (job.workdir / "detections.json").write_text(json.dumps(detections))
        return detections


def _remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
