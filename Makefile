# Two commands do all the set-up:
#   make run    creates .venv if needed, installs, runs the pipeline on the data folder
#   make test   the same environment, the test suite
# And for what a run leaves: make ui (the MLflow UI of ./mlflow.db), make docs (the docs site).
# The data folder is VARIANTS_DATA_DIR, else ../shared/data. Extra arguments go in ARGS:
#   make run ARGS="--profile smoke"      make test ARGS='-m "not slow"' (docs/development.md: tiers)
# Both install exactly the locked set (requirements.lock, with hashes); pyproject.toml keeps
# the ranges the package promises. make lock rewrites the lock from pyproject.toml.

PYTHON ?= python3
VENV := .venv
# Stamp of the last install: .venv is stale when pyproject.toml or the lock is newer, or missing.
INSTALLED := $(VENV)/.installed
PIP := PIP_DISABLE_PIP_VERSION_CHECK=1 $(VENV)/bin/pip
# Universal: one lock for every platform and Python 3.11+, each wheel's hash recorded.
LOCK := $(VENV)/bin/uv pip compile pyproject.toml --all-extras --universal \
	--python-version 3.11 --generate-hashes --quiet -o requirements.lock
VARIANTS_DATA_DIR ?= ../shared/data
export VARIANTS_DATA_DIR
ARGS ?=

.PHONY: run test lint lock ui docs

run: $(INSTALLED)
	@$(VENV)/bin/variants run --data-dir "$(VARIANTS_DATA_DIR)" $(ARGS)

# pytest exits 5 when it collected no test: a failure too, said plainly. scripts/system-packages
# installs the browser the report's test drives (as root with apt-get; otherwise it says how).
# The suite runs in TEST_WORKERS processes (pytest-xdist): most of its time is waiting on
# servers and subprocesses, so more workers than cores pay; the tests of one shared fixture
# go to one worker (--dist loadgroup, the groups derived in tests/conftest.py).
TEST_WORKERS ?= 3
test: $(INSTALLED)
	@scripts/system-packages || echo "make test: going on without it; its tests are skipped" >&2
	@$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

# The MLflow UI of the local store, where every link the tool prints points
# (VARIANTS_MLFLOW_UI, default http://127.0.0.1:5000); without MLflow's job runner, whose
# consumer processes serve GenAI features this project does not use.
MLFLOW_UI_ADDRESS = $(or $(VARIANTS_MLFLOW_UI),http://127.0.0.1:5000)
ui: $(INSTALLED)
	@host_port=$$(echo "$(MLFLOW_UI_ADDRESS)" | sed -E 's#^https?://##; s#/.*$$##'); \
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui \
		--backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" \
		--host "$${host_port%:*}" --port "$${host_port##*:}"

# The documentation site on http://127.0.0.1:8000 (mkdocs build --strict is CI's check).
docs: $(INSTALLED)
	@NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

lint: $(INSTALLED)
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# After changing pyproject.toml's dependencies: make lock, then make test (it reinstalls).
# uv keeps every pin the ranges still allow; to move one: make lock LOCK_ARGS="-P NAME".
lock: $(INSTALLED)
	@$(LOCK) $(LOCK_ARGS) && echo "requirements.lock rewritten: run make test"

$(INSTALLED): pyproject.toml requirements.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the locked dependency set into $(VENV) (first time: minutes)"
	@$(PIP) install -qq --require-hashes --no-deps -r requirements.lock
	@$(PIP) install -qq --no-deps -e .
	@touch $@
