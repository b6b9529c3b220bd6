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
	$(BIN)/ruff check pseudo proposals trainers tests bench
	$(BIN)/ruff format --check pseudo proposals trainers tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

# Zero-shot QVHighlights from the real clip captions, every stage a pseudo command (about 45 min on 2 CPU cores).
QVH_CAPTIONS ?= ../shared/data/qvhighlights/vtggpt_captions
QVH := runs/qvh
.PHONY: qvhighlights
qvhighlights: install
	$(BIN)/pseudo features --captions $(QVH_CAPTIONS)/val.zip --out $(QVH)/val_store
	$(BIN)/pseudo features --captions $(QVH_CAPTIONS)/test --out $(QVH)/test_store
	$(BIN)/pseudo proposals --features-dir $(QVH)/val_store --out $(QVH)/proposals_val.jsonl --steps 0 --num-proposals 100
	$(BIN)/pseudo proposals --features-dir $(QVH)/test_store --out $(QVH)/proposals_test.jsonl --steps 0 --num-proposals 100
	$(BIN)/pseudo captions --proposals $(QVH)/proposals_val.jsonl --features-dir $(QVH)/val_store \
		--captions $(QVH_CAPTIONS)/val.zip --out $(QVH)/pseudo_val.jsonl --compare qvhighlights:train
	test -f runs/qvhighlights_captions_zs/metrics.json || $(BIN)/pseudo train recipes/qvhighlights_captions_zs.yaml
	$(BIN)/pseudo predict --run runs/qvhighlights_captions_zs -d qvhighlights -s val \
		--features $(QVH)/val_store --proposals $(QVH)/proposals_val.jsonl --out $(QVH)/preds_val.jsonl
	$(BIN)/pseudo predict --run runs/qvhighlights_captions_zs -d qvhighlights -s test \
		--features $(QVH)/test_store --proposals $(QVH)/proposals_test.jsonl --out $(QVH)/preds_test.jsonl
	$(BIN)/pseudo eval -d qvhighlights -s val $(QVH)/preds_val.jsonl
	$(BIN)/pseudo eval -d qvhighlights -s test $(QVH)/preds_test.jsonl
