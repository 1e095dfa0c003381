# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000

.PHONY: run test lint install install-dev migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/flask --app wsgi db upgrade

## run: web + worker (+ a simulated Ollama when none answers), at http://127.0.0.1:$(PORT)/
run: migrate
	PORT=$(PORT) $(BIN)/python scripts/devrun.py

## test: the whole suite (MySQL and browser tests run when their servers are there), in
## TEST_PROCESSES parallel processes (most tests wait on real servers, not on the CPU), with branch
## coverage of the test processes' code (no threshold: it shows what the tests leave out)
TEST_PROCESSES ?= 2
test: install-dev
	$(BIN)/pytest -n $(TEST_PROCESSES) --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

## lint: ruff (pyflakes, pycodestyle, import order, bugbear, ...); fails on any finding
lint: install-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) instance .pytest_cache test-output
