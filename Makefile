# Quick start: `make serve` runs the server, `make test` runs the checks. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
LISTEN ?= 127.0.0.1:50051
SOCKET ?= /tmp/broadcaster.sock
METRICS ?= 127.0.0.1:9464

FUZZ_EXAMPLES ?= 1000
FUZZ_SECONDS ?= 120
FUZZ_OUT ?= build/fuzz

.PHONY: venv serve test test-cluster lint proto proto-check dashboard bench bench-quick fuzz clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,fast,bench]'
	touch $@

serve: venv
	$(VENV)/bin/broadcaster serve --listen $(LISTEN) --listen unix:$(SOCKET) --metrics-listen $(METRICS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy broadcaster

test: venv lint
	$(PY) -m pytest -n 2 --dist loadgroup -m "not cluster"

# the tests on a 3-node NATS cluster (kill -9 of a stream's leader); prints the figures
test-cluster: venv
	$(PY) -m pytest -m cluster -rP -q

# Longer fuzzing than `make test` does: the hypothesis fuzz tests with FUZZ_EXAMPLES
# examples each, then atheris (libFuzzer) on the filter parser and the hand-written
# protobuf encoder for FUZZ_SECONDS each; findings go to FUZZ_OUT.
fuzz: venv
	$(PY) -m pip install --quiet -e '.[fuzz]'
	mkdir -p $(FUZZ_OUT)
	BROADCASTER_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/grpc/test_fuzz.py -q \
		-p no:cacheprovider --timeout 3600
	$(PY) fuzz/filters.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
		-artifact_prefix=$(FUZZ_OUT)/filters-
	$(PY) fuzz/encoder.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
		-artifact_prefix=$(FUZZ_OUT)/encoder-

proto: venv
	$(PY) scripts/gen_protos.py

proto-check: venv
	$(PY) scripts/gen_protos.py --check

dashboard: venv
	$(PY) scripts/gen_dashboard.py

bench: venv
	$(PY) -m bench run --full

bench-quick: venv
	$(PY) -m bench run --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
