# capstream — `make demo` runs the local pipeline, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit integration bench clean kafka-up kafka-down

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/capstream demo

lint: $(STAMP)
	$(BIN)/ruff check capstream tests benchmarks
	$(BIN)/ruff format --check capstream tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The integration fixture starts a broker on free ports (jars via mvn, cached) and stops it
# when the session ends, whether tests pass or fail.
integration: $(STAMP)
	$(BIN)/pytest tests/integration

test: lint typecheck $(STAMP)
	$(BIN)/pytest tests

# The suite: capstream, its peers and the limits around it on one broker (< 15 min; results
# in bench-results/<timestamp>/). `capstream bench --quick` takes < 3 min.
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/capstream bench

kafka-up: $(STAMP)
	$(BIN)/capstream kafka up

kafka-down: $(STAMP)
	$(BIN)/capstream kafka down

clean:
	-$(BIN)/capstream kafka down
	rm -rf .capstream .pytest_cache .mypy_cache .ruff_cache
