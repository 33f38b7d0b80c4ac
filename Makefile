# Set-up commands for a fresh machine: `make demo` (main job), `make test` (test suite), `make lint`.
# Each creates .venv and installs the project with every extra (and the test tools) on first use, with the
# exact versions of the development machine from constraints.txt (torch 2.13.0 CPU).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_INSTALL := $(BIN)/python -m pip install -q -c constraints.txt
LINT_PATHS := epg_core bridges cli bench tests

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(PIP_INSTALL) -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/epg demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

# pyright resolves epg_bridges, epg_cli and epg_bench (package-dir bridges/, cli/, bench/) through links under
# build/pyright.
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	mkdir -p build/pyright
	ln -sfn ../../bridges build/pyright/epg_bridges
	ln -sfn ../../cli build/pyright/epg_cli
	ln -sfn ../../bench build/pyright/epg_bench
	$(BIN)/pyright $(LINT_PATHS)

bench: $(STAMP)
	$(BIN)/epg bench --quick

clean:
	rm -rf $(VENV) build *.egg-info
