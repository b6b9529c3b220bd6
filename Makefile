# `make demo` sets up .venv and runs the bundled demo; `make test` runs every check CI runs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/pseudo demo

lint: install
	$(BIN)/ruff check pseudo tests bench
	$(BIN)/ruff format --check pseudo tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q
