# The two set-up commands of the README: `make serve` and `make test`. Both install first.
# `make serve` installs the runtime only (no torch: it serves the shipped ONNX exports on CPU) unless $(VENV)
# already holds the full install; `make test`, `make install` and `make models` install the full stack.
.PHONY: install serve test lint models
VENV ?= .venv

install:
	LGM_VENV=$(VENV) ./scripts/install.sh full

serve:
	LGM_VENV=$(VENV) ./scripts/install.sh serve
	$(VENV)/bin/lgm-pose serve

test: install
	$(VENV)/bin/python -m pytest -q

lint:
	$(VENV)/bin/ruff check app model bench tests

# The shipped ONNX exports of the default weights (committed; the runtime-only install and docker/Dockerfile.cpu
# serve them), made again from the checkpoints, byte for byte; tests/test_shipped_exports.py fails when stale.
models: install
	$(VENV)/bin/lgm-pose export --weights weights/lgm_pose_coco_256x192.pt \
		--out weights/lgm_pose_coco_256x192.onnx --detector-out weights/yolo11n-pose.onnx
