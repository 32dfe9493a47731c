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

.PHONY: setup data test test-lib test-notebooks test-flipped test-lab lab run publish sweep bench bench-peer lock clean

setup: $(VENV)/.installed data  ## virtual environment, locked packages, course kernel, data, trusted notebooks
	@$(VENV)/bin/jupyter trust notebooks/*.ipynb solutions/*.ipynb >/dev/null  # their stored HTML (pandas tables) shown as stored

# The venv names the folder it was made in (scripts, editable install, kernel spec): one set up for
# another folder (the checkout was moved or copied since) is rebuilt. See scripts/venv_home.py.
VENV_HOME := $(shell $(PYTHON) scripts/venv_home.py $(VENV))
ifeq ($(firstword $(VENV_HOME)),moved)
$(info $(VENV) was set up for $(wordlist 2,1000,$(VENV_HOME)); rebuilding it for $(CURDIR))
.PHONY: $(VENV)/.installed
endif

# requirements.lock: requirements.txt's pins and all their dependencies, with hashes (`make lock`).
$(VENV)/.installed: requirements.lock pyproject.toml
	$(if $(filter moved,$(firstword $(VENV_HOME))),rm -rf $(VENV))
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (TinyBERT course)"
	$(PYTHON) scripts/venv_home.py --record $(VENV)

data: $(VENV)/.installed  ## fill data/ from $$DATA_MIRROR, or from the Hugging Face hub when online
	$(PY) -m tinybert_lib data prepare

test: setup test-lib test-notebooks test-flipped  ## pytest on the library, nbval on every lesson, twice

test-lib: $(VENV)/.installed
	$(PY) -m pytest tests -q

test-notebooks: $(VENV)/.installed
	$(PY) -m pytest -q $(NBVAL) notebooks solutions

test-flipped: $(VENV)/.installed  ## the checked outputs again, under other CPU arithmetic
	$(FLIPPED) $(PY) -m pytest -q $(NBVAL) notebooks solutions

lab: setup $(VENV)/.lab-installed  ## JupyterLab at the course root (lessons and solutions), with the course kernel
	$(VENV)/bin/jupyter lab --notebook-dir=. $$([ "$$(id -u)" = 0 ] && echo --allow-root)

$(VENV)/.lab-installed: $(VENV)/.installed requirements-lab.lock  ## JupyterLab's packages, apart from make test's
	$(PY) -m pip install --quiet --require-hashes -r requirements-lab.lock
	touch $@

# The browser test (tests/lab, README "Tests"): JupyterLab as `make lab` serves it, in Debian's Chromium
# (apt-get installs it when /usr/bin/chromium is missing), driven by Playwright from a venv of its own
# (tests/lab/requirements.lock: Playwright and pytest, pinned with hashes; no browser download).
LAB_TEST := $(BUILD)/lab-test
test-lab:  ## the browser test: the lab loads, lesson 02 opens with the course kernel and runs (screenshots in $(BUILD)/lab)
	@start=$$(date +%s); rc=0; \
	$(MAKE) --no-print-directory setup $(VENV)/.lab-installed $(LAB_TEST)/.installed /usr/bin/chromium \
	&& TINYBERT_VENV=$(VENV) TINYBERT_LAB_ARTIFACTS=$(BUILD)/lab CHROMIUM=/usr/bin/chromium \
	   $(LAB_TEST)/bin/python -m pytest -p no:cacheprovider -q --durations=0 --durations-min=1 tests/lab || rc=$$?; \
	echo "make test-lab: $$(( $$(date +%s) - start )) s$$([ $$rc = 0 ] || echo ", failed (screenshots in $(BUILD)/lab)")"; \
	exit $$rc

$(LAB_TEST)/.installed: tests/lab/requirements.lock
	$(PYTHON) -m venv $(LAB_TEST)
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(LAB_TEST)/bin/pip install --quiet --require-hashes -r tests/lab/requirements.lock
	touch $@

/usr/bin/chromium:  # Debian's, for the browser test
	$$([ "$$(id -u)" = 0 ] || echo sudo) apt-get update -qq
	$$([ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

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

# Regenerate the locks from requirements.txt and requirements-lab.txt (pip-tools in a venv of its own).
# The lab lock starts from the main one, so that the packages they share keep the same versions.
# torch is locked as requirements.txt pins it (2.13.0, not 2.13.0+cpu), with the CPU wheel's hash:
# a CUDA build installed first (README, "Running on a GPU") then satisfies it and is kept.
LOCK_TOOLS := $(BUILD)/lock-tools
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock:  ## requirements.lock and requirements-lab.lock: every package, pinned, with hashes
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install --quiet pip-tools==7.7.0
	$(PIP_COMPILE) --output-file requirements.lock requirements.txt
	cp requirements.lock requirements-lab.lock
	$(PIP_COMPILE) --output-file requirements-lab.lock requirements.txt requirements-lab.txt
	perl -pi -e 's/^torch==([^ +]+)\+cpu /torch==$$1 /' requirements.lock requirements-lab.lock

clean:  ## remove build outputs and caches (not the data, not the venv)
	rm -rf $(BUILD) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +
