# TinyBERT from Scratch: `make setup` once, then `make test`, `make lab` or `make run PROFILE=cpu`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KERNEL := tinybert
PROFILE ?= smoke
BUILD ?= build

.PHONY: setup data test test-lib test-notebooks lab run bench clean

setup: $(VENV)/.installed data  ## virtual environment, pinned packages, course kernel, data

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (TinyBERT course)"
	touch $@

data:  ## fill data/ from $$DATA_MIRROR, or from the Hugging Face hub when online
	$(PY) -m tinybert_lib data prepare

test: test-lib test-notebooks  ## the whole suite: pytest on the library, nbval on the lessons

test-lib:
	$(PY) -m pytest tests -q

test-notebooks:
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=900 notebooks solutions

lab:  ## JupyterLab on the lessons, with the course kernel
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

run:  ## execute every lesson with papermill: make run PROFILE=smoke|cpu|gpu
	$(PY) scripts/run_course.py --profile $(PROFILE) --build $(BUILD)

bench:  ## distillation-step throughput (course vs naive loop) and teacher/student latency, printed
	mkdir -p $(BUILD)
	$(PY) -m tinybert_lib.bench --json $(BUILD)/bench.json

clean:  ## remove build outputs and caches (not the data, not the venv)
	rm -rf $(BUILD) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +
