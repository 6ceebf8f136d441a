# Two commands set everything up on a fresh machine:
#   make run    trains, evaluates, traces and costs the embedded default (digits)
#   make test   runs the test suite
#   make clean  removes .venv and .pytest_cache (never runs/, which holds your results)
# Each creates .venv on first use. torch is pinned to the CPU build (2.13.0) first, and
# everything else is installed against constraints.txt so no peer can pull a CUDA build.
PYTHON ?= python3
# Where the CPU build of torch comes from. Empty: pip's configured sources (this project's
# machines carry the CPU wheel locally). Elsewhere on Linux set
#   make run TORCH_INDEX=https://download.pytorch.org/whl/cpu
# or PyPI's default torch wheel (a CUDA build, several GB) is installed.
TORCH_INDEX ?=
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -c constraints.txt -e ".[peers,dev,distributed,text]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/spikecim run

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(VENV)/bin/spikecim bench

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) .pytest_cache
