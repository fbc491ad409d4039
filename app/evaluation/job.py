"""One evaluation job: its state, progress and result, as GET /eval/{id} shows it and the job store keeps it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.evaluation.spec import EvalSpec

JobState = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
ENDED = ("done", "failed", "cancelled", "interrupted")
STALE_S = 30.0  # shared store: a job not saved for this long lost its replica


@dataclass
class EvalJob:
    """One evaluation job; `as_dict` is what GET /eval/{id} answers."""

    id: str
    spec: EvalSpec
    state: JobState = "queued"
    phase: str = "queued"
    done: int = 0
    total: int = 0
    phase_started: float = 0.0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    workdir: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def eta_s(self) -> float | None:
        if self.state != "running" or self.done <= 0 or self.total <= 0:
            return None
        return round((time.perf_counter() - self.phase_started) * (self.total - self.done) / self.done, 2)

    def to_record(self) -> dict[str, Any]:
        """What the job store keeps: the job and its last saved progress (`updated`: when it was saved)."""
        return {"id": self.id, "spec": self.spec.to_dict(), "state": self.state, "phase": self.phase,
                "created": self.created, "started": self.started, "finished": self.finished, "result": self.result,
                "error": self.error, "workdir": str(self.workdir) if self.workdir else None,
                "done": self.done, "total": self.total, "updated": time.time()}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> EvalJob:
        job = cls(id=rec["id"], spec=EvalSpec.from_dict(rec["spec"]), state=rec["state"], phase=rec["phase"],
                  created=rec["created"], started=rec["started"], finished=rec["finished"], result=rec["result"],
                  error=rec["error"], workdir=Path(rec["workdir"]) if rec["workdir"] else None,
                  done=rec.get("done", 0), total=rec.get("total", 0))
        if rec.get("cancel_requested"):
            job.cancel.set()
        return job

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "dataset": self.spec.kind, "state": self.state, "request": self.spec.request,
                "progress": {"phase": self.phase, "done": self.done, "total": self.total, "eta_s": self.eta_s()},
                "created_at": self.created, "started_at": self.started, "finished_at": self.finished,
                "cancel_requested": self.cancel.is_set(), "error": self.error, "result": self.result}


def stored_job(record: dict[str, Any]) -> EvalJob:
    """A job as another replica last saved it; one not saved for `STALE_S` lost its replica (interrupted)."""
    job = EvalJob.from_record(record)
    if job.state not in ENDED and time.time() - record.get("updated", 0) > STALE_S:
        job.state, job.error = "interrupted", "the replica running the job stopped; submit its request again"
    return job

