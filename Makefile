# `make demo` and `make test` do all set-up themselves on a fresh machine (Python 3.11 required).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# pip's machine config may add a find-links folder holding a CPU-only torch wheel that has no
# matching torchvision; an empty find-links folder makes pip take the pinned registry builds.
EMPTY_FIND_LINKS := $(CURDIR)/.pip-empty

.PHONY: install demo test test-fast lint format benchmarks clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	mkdir -p $(EMPTY_FIND_LINKS)
	PIP_FIND_LINKS=$(EMPTY_FIND_LINKS) $(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m dogbreeds.demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

clean:
	rm -rf $(VENV) $(EMPTY_FIND_LINKS) mlflow.db mlruns optuna.db outputs sample_data
