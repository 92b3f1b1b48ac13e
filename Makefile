# Two commands for a new user: `make run` (the demo) and `make test` (the suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin

.PHONY: install run test lint fuzz clean browser

$(BIN)/orloj: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/orloj

# Start the embedded local system, run the pipeline blueprint on the mock model, print its
# trace and output, and shut down what was started.
run: install
	PATH="$(abspath $(BIN)):$$PATH" bash cluster/demo.sh

lint: install
	$(BIN)/lint-imports

# The console tests drive Debian's chromium with Playwright (it cannot download browsers here).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: install lint browser
	$(PY) -m pytest -q

# The API fuzzed deeper than in `make test` (tests/fuzz/README.md); about 6 minutes.
fuzz: install
	FUZZ_EXAMPLES=100 FUZZ_MANIFESTS=1500 $(PY) -m pytest -q tests/test_api_fuzz.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
