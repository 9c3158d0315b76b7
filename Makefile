# `make demo` and `make test` each set up what they need on first use, then run.
#   .venv      the full environment (requirements.txt: numpy 1.23, mxnet, faiss-cpu 1.8)
#   .venv-np2  the current stack (requirements-np2.txt: numpy 2, the current faiss-cpu, no mxnet)
#   .venv-serve  a serving machine without torch (requirements-serve.txt: ONNX Runtime)
# The first two have the same CPU torch.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
VENV_NP2 := .venv-np2
BIN_NP2 := $(VENV_NP2)/bin
# a serving machine: requirements-serve.txt, no torch (tests/test_onnx.py runs recommend there)
VENV_SERVE := .venv-serve
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast lint chromium setup clean

demo: $(VENV)/.installed
	$(BIN)/fashionrec demo --out demo

# ruff, the whole suite in the full environment, then every test but the mxnet ones on numpy 2
# (run once: the benchmark scripts' smoke tests, ~4 min, time the machine, not numpy; the registries'
# contract runs every registered entry through the CLI, the same code on either numpy).
test: $(VENV)/.installed-dev $(VENV_NP2)/.installed-dev $(VENV_SERVE)/.installed chromium
	$(BIN)/ruff check .
	FASHIONREC_SERVE_PYTHON=$(VENV_SERVE)/bin/python $(BIN)/python -m pytest -q --timeout=1800
	$(BIN_NP2)/python -m pytest -q --timeout=1800 -m "not mxnet" --ignore=tests/test_benchmarks.py --ignore=tests/test_registries.py

test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

setup: $(VENV)/.installed-dev $(VENV_NP2)/.installed-dev $(VENV_SERVE)/.installed

$(VENV)/.installed: pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	touch $@

$(VENV_NP2)/.installed-dev: pyproject.toml requirements-np2.txt requirements-dev.txt
	test -x $(BIN_NP2)/python || $(PYTHON) -m venv $(VENV_NP2)
	$(BIN_NP2)/python -m pip install -q --upgrade pip
	$(BIN_NP2)/python -m pip install -q -r requirements-np2.txt -r requirements-dev.txt
	$(BIN_NP2)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV_SERVE)/.installed: pyproject.toml requirements-serve.txt
	test -x $(VENV_SERVE)/bin/python || $(PYTHON) -m venv $(VENV_SERVE)
	$(VENV_SERVE)/bin/python -m pip install -q --upgrade pip
	$(VENV_SERVE)/bin/python -m pip install -q -r requirements-serve.txt
	$(VENV_SERVE)/bin/python -m pip install -q --no-deps -e .
	touch $@

# Debian's Chromium for the browser test of the web page (playwright drives it; it never
# downloads a browser of its own).
chromium: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver

clean:
	rm -rf $(VENV) $(VENV_NP2) $(VENV_SERVE) demo .pytest_cache
