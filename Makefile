# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test lint check bench clean

demo: $(VENV)/.installed
	$(BIN)/broker demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(VENV)/.installed
	$(BIN)/ruff check broker tests bench verify
	$(BIN)/mypy

check: $(VENV)/.installed
	$(BIN)/broker check

bench: $(VENV)/.installed
	$(BIN)/python bench/bench_login.py --logins 300 --workers 2 --concurrency 4 --prefill 100

$(VENV)/.installed: pyproject.toml verify/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) var build *.egg-info
