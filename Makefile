# Two commands do all the set-up:
#   make run    creates .venv if needed, installs, runs the pipeline on the data folder
#   make test   the same environment, the test suite
# The data folder is VARIANTS_DATA_DIR, else ../shared/data. Extra arguments go in ARGS:
#   make run ARGS="--profile smoke"      make test ARGS='-m "not slow"'

PYTHON ?= python3
VENV := .venv
# Stamp of the last install: .venv is stale when pyproject.toml is newer, or missing.
INSTALLED := $(VENV)/.installed
VARIANTS_DATA_DIR ?= ../shared/data
export VARIANTS_DATA_DIR
ARGS ?=

.PHONY: run test lint

run: $(INSTALLED)
	@$(VENV)/bin/variants run --data-dir "$(VARIANTS_DATA_DIR)" $(ARGS)

# pytest exits 5 when it collected no test: a failure too, said plainly.
test: $(INSTALLED)
	@$(VENV)/bin/python -m pytest $(ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

lint: $(INSTALLED)
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

$(INSTALLED): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing keras-variants and its dependencies into $(VENV) (first time: minutes)"
	@PIP_DISABLE_PIP_VERSION_CHECK=1 $(VENV)/bin/pip install -qq --upgrade pip
	@PIP_DISABLE_PIP_VERSION_CHECK=1 $(VENV)/bin/pip install -qq -e ".[dev]"
	@touch $@
