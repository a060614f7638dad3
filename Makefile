# renditions: the two set-up commands are `make demo` and `make test` (see README.md).
# Every target installs what it needs on a fresh Debian machine with the Rust toolchain and
# Python 3.11 (no Docker, no AWS account).

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
CORPUS ?= ../shared/corpus/photos
N ?= 1000
ENVS ?= 1,2,4
S3 ?= localstack
RUNS ?= 5

.PHONY: all deps py-deps build-native demo test test-rust test-template lint fmt bench bench-peers \
        build build-arm64 build-x86_64 deploy loadtest loadtest-smoke clean

all: build-native

## deps: system packages the build needs (nasm for libjpeg-turbo's x86-64 SIMD)
deps:
	@command -v nasm >/dev/null 2>&1 || { \
	  echo "installing nasm (libjpeg-turbo SIMD)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nasm >/dev/null; }

## py-deps: Python tools the tests use (moto's S3 server, cfn-lint, pytest)
py-deps:
	@$(PYTHON) -c 'import moto, cfnlint, pytest' 2>/dev/null || \
	  $(PYTHON) -m pip install -q 'moto[server]==5.2.1' 'cfn-lint>=1.20' 'pytest>=7'

build-native: deps
	$(CARGO) build --release --bins

## demo: the main job on embedded defaults: an in-process S3 server, sample uploads, renditions
demo: deps
	$(CARGO) run --release --bin demo

## test: everything CI runs
test: deps py-deps
	$(CARGO) test
	$(PYTHON) -m pytest -q tests/template_test.py

lint: deps py-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	cfn-lint template.yaml
	@if command -v sam >/dev/null 2>&1; then sam validate --lint; else echo "sam not installed: skipped sam validate --lint"; fi

fmt:
	$(CARGO) fmt --all

## bench: criterion benches per stage and end to end
bench: deps
	$(CARGO) bench --bench pipeline

## bench-peers: the same job by sharp, Pillow and `renditions render --threads 1`
bench-peers: build-native
	bash benches/peers/setup.sh
	$(PYTHON) benches/peers/run.py --corpus $(CORPUS) --runs $(RUNS) --bin target/release/renditions \
	  --watermark assets/watermark.png --json target/bench-peers.json --markdown target/bench-peers.md

clean:
	$(CARGO) clean
