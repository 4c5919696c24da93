# Two commands on a fresh machine (Python 3.11 + pip + network to PyPI):
#   make demo   installs the locked environment and runs the full demo into data/
#   make test   installs the locked environment and runs the whole test suite
PYTHON ?= python3
VENV   := .venv
UV     := $(VENV)/bin/uv
export NBO_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(NBO_DATA_DIR)/.nbo/dagster_home

.PHONY: demo test ui lint bench install

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "uv==0.13.9"

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --inexact --extra dev --python $(VENV)/bin/python
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/nbo demo

test: install
	$(VENV)/bin/pytest -q

ui: install
	$(VENV)/bin/python -c "from nbo_platform.runner import ensure_dagster_home; from nbo_platform.settings import load_settings; ensure_dagster_home(load_settings())"
	$(VENV)/bin/dagster dev -w workspace.yaml

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(VENV)/bin/python benchmarks/bench_nbo.py
