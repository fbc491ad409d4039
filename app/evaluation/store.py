"""Where evaluation jobs outlive the process: job records in SQLite (stdlib), result files in a folder per job.

`JobStore` is the small interface the job manager needs (save, load, get, delete, a cancel flag, a folder per
job). Several replicas on one machine (the Ray cluster of `app.cluster`) share one store by sharing the folder:
SQLite in WAL mode serialises their writes. Replicas on several machines need a folder on storage with working
file locks, or the same methods on a network database.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any


class JobStore:
    """SQLite file `jobs.sqlite3` and one folder per job under `folder`; safe to call from several threads."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.folder / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")  # other replicas' writes: wait for them, do not fail
        self._db.execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, created REAL, record TEXT NOT NULL,"
                         " cancel INTEGER NOT NULL DEFAULT 0)")
        if "cancel" not in {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}:  # an older store
            self._db.execute("ALTER TABLE jobs ADD COLUMN cancel INTEGER NOT NULL DEFAULT 0")

    def save(self, record: dict[str, Any]) -> None:
        """Insert or update one job record (JSON-able, with 'id' and 'created'); its cancel flag is kept."""
        with self._lock:
            self._db.execute("INSERT INTO jobs (id, created, record) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE "
                             "SET created = excluded.created, record = excluded.record",
                             (record["id"], record["created"], json.dumps(record)))

    def get(self, job_id: str) -> dict[str, Any] | None:
        """One record (with its cancel flag as 'cancel_requested'), or None."""
        with self._lock:
            row = self._db.execute("SELECT record, cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return {**json.loads(row[0]), "cancel_requested": bool(row[1])} if row else None

    def request_cancel(self, job_id: str) -> None:
        """Raise a job's cancel flag (its owner, maybe another replica, reads it while it runs)."""
        with self._lock:
            self._db.execute("UPDATE jobs SET cancel = 1 WHERE id = ?", (job_id,))

    def load(self) -> list[dict[str, Any]]:
        """Every stored record, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM jobs ORDER BY created").fetchall()
        return [json.loads(row[0]) for row in rows]

    def delete(self, job_id: str) -> None:
        """Forget a job and delete its folder."""
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self.folder / job_id, ignore_errors=True)

    def workdir(self, job_id: str) -> Path:
        """The job's own folder (results files), created."""
        path = self.folder / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        with self._lock:
            self._db.close()
