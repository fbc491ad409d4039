# The two set-up commands of the README: `make serve` and `make test`. Both install first.
.PHONY: install serve test lint models
VENV ?= .venv

install:
	./scripts/install.sh

serve: install
	$(VENV)/bin/lgm-pose serve

test: install
	$(VENV)/bin/python -m pytest -q

lint:
	$(VENV)/bin/ruff check app model bench tests

# The ONNX exports the CPU image serves (docker/Dockerfile.cpu copies build/models).
models: install
	$(VENV)/bin/lgm-pose export --weights weights/lgm_pose_coco_256x192.pt \
		--out build/models/lgm_pose_coco_256x192.onnx --detector-out build/models/yolo11n-pose.onnx
