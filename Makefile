# `make demo` and `make test` each set up .venv (Python 3.11) on first use, then run.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast setup clean

demo: $(VENV)/.installed
	$(BIN)/fashionrec demo --out demo

test: $(VENV)/.installed-dev $(CHROMIUM)
	$(BIN)/python -m pytest -q --timeout=1800

test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not slow"

setup: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

# Debian's Chromium for the browser test of the web page (playwright drives it; it never
# downloads a browser of its own).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver

clean:
	rm -rf $(VENV) demo .pytest_cache
