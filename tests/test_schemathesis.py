"""Schemathesis against the live OpenAPI schema: 0 server errors, 0 responses that break the schema.

Checks: all of schemathesis' checks (server errors, status codes, content types, response bodies and headers
against the schema, schema-violating requests refused, method handling) except `positive_data_acceptance`:
a request can be schema-valid and still be refused with a documented 4xx for what a schema cannot say (an upload
that is no decodable image, a dataset folder that does not exist). Bounded: 25 examples per operation, fixed
seed. Random weights: no accuracy is tested here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from live_server import free_port, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[1]


def test_schemathesis_finds_no_failures(random_checkpoint: Path, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is part of the dev install"
    port = free_port()
    env = {**os.environ, "LGM_POSE_POSE_WEIGHTS": str(random_checkpoint), "LGM_POSE_BACKEND": "torch",
           "LGM_POSE_DATA_ROOT": str(tmp_path), "LGM_POSE_JOBS_DIR": str(tmp_path / "jobs"),
           "LGM_POSE_TORCH_THREADS": "2", "YOLO_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, alive=lambda: server.poll() is None)
        run = subprocess.run([st, "run", url + "/openapi.json", "--checks", "all", "--exclude-checks",
                              "positive_data_acceptance", "-n", "25", "--seed", "1", "--request-timeout", "60"],
                             capture_output=True, text=True, timeout=500)
        print(run.stdout[-3000:])
        assert run.returncode == 0, run.stdout[-6000:]
        assert "passed" in run.stdout and "failure" not in run.stdout.split("SUMMARY")[-1].lower()
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "Traceback" not in err, err[-3000:]
