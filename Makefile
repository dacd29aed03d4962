# `make run` serves the registry on the embedded default (SQLite + ./data, port 5000);
# `make test` runs the whole test suite. Both set up .venv on first use.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint system-deps clean

run: $(VENV)/.installed
	$(BIN)/registry serve

test: lint system-deps
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy registry

system-deps:
	@.ci/system-deps

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
