# capstream — `make demo` runs the local pipeline, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NATIVE := $(VENV)/.native-stamp
# The hot path mypyc compiles (the list is capstream/_native.py); rebuilt when one changes.
NATIVE_SRC := setup.py capstream/_native.py \
	$(shell sed -n 's/^    "\(capstream[a-z0-9_.]*\)",$$/\1/p' capstream/_native.py | tr . / | sed 's/$$/.py/')

.PHONY: demo test lint typecheck unit integration bench chaos build clean kafka-up kafka-down ts bench-ts

# The TypeScript SDK (sdk/typescript): installed with `npm ci` from its lock file, npm only.
NPM ?= npm
TS := sdk/typescript
TS_STAMP := $(TS)/node_modules/.installed-stamp

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	CAPSTREAM_PURE=1 $(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Compile the hot path in place (about 90 s); `CAPSTREAM_PURE=1` at run time ignores it.
$(NATIVE): $(STAMP) $(NATIVE_SRC)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(NATIVE)

build: $(NATIVE)

# The demo does not wait for the compile (its traffic is light): on a fresh clone it runs
# the plain-Python hot path until `make build` or `make test` has compiled it.
demo: $(STAMP)
	$(BIN)/capstream demo

$(TS_STAMP): $(TS)/package.json $(TS)/package-lock.json
	cd $(TS) && $(NPM) ci --no-audit --no-fund
	touch $(TS_STAMP)

# Strict compile, then node --test on the shared vectors and the offline tests (~5 s); also
# builds the driver the Python integration tests run (tests/integration/test_typescript_sdk.py).
ts: $(TS_STAMP)
	cd $(TS) && $(NPM) test

# gate() calls/s, record() events/s into the broker, decision -> verdict latency (needs
# CAPSTREAM_KAFKA_BOOTSTRAP or `make kafka-up`); not part of `make test`.
bench-ts: $(TS_STAMP)
	cd $(TS) && $(NPM) run bench

lint: $(STAMP)
	$(BIN)/ruff check capstream tests benchmarks
	$(BIN)/ruff format --check capstream tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(NATIVE)
	$(BIN)/pytest tests/unit

# The integration fixture starts a broker on free ports (jars via mvn, cached) and stops it
# when the session ends, whether tests pass or fail.
integration: $(NATIVE)
	$(BIN)/pytest tests/integration

# Everything runs the compiled hot path; its unit tests run once more as plain Python (what
# an install without a C compiler runs).
test: lint typecheck $(NATIVE) ts
	$(BIN)/pytest tests
	CAPSTREAM_PURE=1 $(BIN)/pytest -q tests/unit/core tests/unit/processors tests/unit/test_native.py

# The suite: capstream, its peers and the limits around it on one broker (< 15 min; results
# in bench-results/<timestamp>/). `capstream bench --quick` takes < 3 min.
bench: $(NATIVE)
	$(BIN)/capstream bench

# The chaos run (not part of `make test`, < 20 min): its own broker, N workers, the sink and
# the notifier under 1,000,000 events while faults are injected, the end-to-end checks, then
# the negative control (a run that drops one event must fail). Results in
# chaos-results/<timestamp>/; exit 1 if a check fails or the control passes.
chaos: $(NATIVE)
	$(BIN)/python -m capstream.chaos

kafka-up: $(STAMP)
	$(BIN)/capstream kafka up

kafka-down: $(STAMP)
	$(BIN)/capstream kafka down

clean:
	-$(BIN)/capstream kafka down
	rm -rf .capstream .pytest_cache .mypy_cache .ruff_cache build $(NATIVE) $(TS)/build $(TS)/dist
	find capstream -name '*.so' -delete
