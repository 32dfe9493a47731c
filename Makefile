# TinyBERT from Scratch: `make run` (the whole course, cpu profile) and `make test`; each sets itself up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KERNEL := tinybert
PROFILE ?= cpu
BUILD ?= build
NBVAL := -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=900
# Other arithmetic for the same lessons: one thread, and torch's, MKL's and oneDNN's plain kernels
# instead of the vectorised ones. The checked outputs must not change (see README, "Tests").
FLIPPED := $(shell cat tests/flipped-arithmetic.env)

.PHONY: setup data test test-lib test-notebooks test-flipped lab run publish sweep bench bench-peer clean

setup: $(VENV)/.installed data  ## virtual environment, pinned packages, course kernel, data

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (TinyBERT course)"
	touch $@

data: $(VENV)/.installed  ## fill data/ from $$DATA_MIRROR, or from the Hugging Face hub when online
	$(PY) -m tinybert_lib data prepare

test: setup test-lib test-notebooks test-flipped  ## pytest on the library, nbval on every lesson, twice

test-lib: $(VENV)/.installed
	$(PY) -m pytest tests -q

test-notebooks: $(VENV)/.installed
	$(PY) -m pytest -q $(NBVAL) notebooks solutions

test-flipped: $(VENV)/.installed  ## the checked outputs again, under other CPU arithmetic
	$(FLIPPED) $(PY) -m pytest -q $(NBVAL) notebooks solutions

lab: setup  ## JupyterLab at the course root (lessons and solutions), with the course kernel
	$(VENV)/bin/jupyter lab --notebook-dir=. $$([ "$$(id -u)" = 0 ] && echo --allow-root)

run: setup  ## execute every lesson with papermill: make run [PROFILE=cpu|smoke|gpu]
	$(PY) scripts/run_course.py --profile $(PROFILE) --build $(BUILD)

publish: setup  ## make run, then store the outputs in notebooks/ (and re-run solutions/)
	$(PY) scripts/run_course.py --profile $(PROFILE) --build $(BUILD) --publish

# The levers behind the cpu profile's recipe, one at a time around it (lesson 10, section 8);
# hours on a laptop CPU. The record lands in build/cpu/sweep/sweep.jsonl.
SWEEP := $(PY) scripts/sweep.py --profile cpu
sweep: setup  ## the small grid that chose the cpu profile's learning rates and pooling
	$(SWEEP) --lever classifier_pooling cls mean
	$(SWEEP) --lever finetune_lr 2e-5 3e-5 4e-5
	$(SWEEP) --lever intermediate_lr 5e-5 5e-4 1e-3 2e-3
	$(SWEEP) --lever prediction_lr 3e-5 1e-4 3e-4
	$(SWEEP) --lever prediction_epochs 1 2

bench: setup  ## distillation-step throughput (course vs TextBrewer, if installed, vs naive loop) and latency, printed
	mkdir -p $(BUILD)
	$(PY) -m tinybert_lib.bench --json $(BUILD)/bench.json

bench-peer: $(VENV)/.installed  ## install TextBrewer 0.2.1 (the peer `make bench` compares with), without tensorboard
	$(PY) -m pip install --quiet --no-deps textbrewer==0.2.1 tensorboardX==2.6.5 protobuf==7.36.2

clean:  ## remove build outputs and caches (not the data, not the venv)
	rm -rf $(BUILD) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +
