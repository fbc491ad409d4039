"""Where evaluation jobs outlive the process: job records in SQLite (stdlib), result files in a folder per job.

`JobStore` is the small interface the job manager needs (save, load, delete, a folder per job); a shared
store for several replicas can implement the same four methods on another database.
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
        self._db.execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, created REAL, record TEXT NOT NULL)")

    def save(self, record: dict[str, Any]) -> None:
        """Insert or replace one job record (JSON-able, with 'id' and 'created')."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO jobs (id, created, record) VALUES (?, ?, ?)",
                             (record["id"], record["created"], json.dumps(record)))

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
