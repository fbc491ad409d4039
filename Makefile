# The two set-up commands of the README: `make serve` and `make test`. Both install first.
.PHONY: install serve test lint
VENV ?= .venv

install:
	./scripts/install.sh

serve: install
	$(VENV)/bin/lgm-pose serve

test: install
	$(VENV)/bin/python -m pytest -q

lint:
	$(VENV)/bin/ruff check app model bench tests
