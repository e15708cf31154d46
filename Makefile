# Two commands: `make run` starts the service, `make test` passes every test.
# Both create .venv and install the project when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: run test lint format audit fuzz bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/bastion serve

test: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/pytest -n $(PYTEST_WORKERS)

# Known vulnerabilities in the resolved dependencies (pip-audit; see .ci/audit.py).
audit: $(STAMP)
	$(BIN)/python .ci/audit.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

fuzz: $(STAMP)
	BASTION_FUZZ_EXAMPLES=2000 $(BIN)/pytest -m "not browser" tests -k "fuzz or schemathesis or property" -p no:xdist

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .bastion .pytest_cache .ruff_cache .mypy_cache
