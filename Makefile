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

.PHONY: all deps py-deps build-native demo test lint fmt bench bench-peers quality \
        build build-arm64 build-x86_64 test-arm64 deploy loadtest loadtest-smoke fuzz-deps fuzz-smoke clean

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
	$(CARGO) run --release --example demo

## test: everything CI runs
test: deps py-deps
	$(CARGO) test
	$(PYTHON) -m pytest -q tests/template_test.py
	$(MAKE) loadtest-smoke LOADTEST_BIN=target/debug/renditions-lambda

## loadtest-smoke: 50 uploads through moto S3 -> SQS -> one real execution environment
LOADTEST_BIN ?= target/release/renditions-lambda
loadtest-smoke:
	@test -x $(LOADTEST_BIN) || $(CARGO) build --bin renditions-lambda
	bash loadtest/setup.sh moto
	loadtest/.venv/bin/python loadtest/run.py --n 50 --envs 1 --s3 moto --bin $(LOADTEST_BIN) --out loadtest-report/smoke

## loadtest: the full load test (N uploads, ENVS execution environments, S3=localstack|moto)
loadtest: deps
	$(CARGO) build --release --bin renditions-lambda
	bash loadtest/setup.sh "$(S3)"
	loadtest/.venv/bin/python loadtest/run.py --n $(N) --envs $(ENVS) --s3 $(S3) --bin target/release/renditions-lambda

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

## quality: PSNR cost of the cascade and of shrink-on-load on the corpus
quality: deps
	$(CARGO) run --release --example quality -- $(CORPUS)

## build: Lambda zips (bootstrap) for x86_64 and arm64, without cargo-lambda
build: build-x86_64 build-arm64

build-x86_64: deps
	$(CARGO) build --release --bin renditions-lambda
	mkdir -p target/lambda/x86_64/renditions-lambda
	cp target/release/renditions-lambda target/lambda/x86_64/renditions-lambda/bootstrap
	cd target/lambda/x86_64/renditions-lambda && $(PYTHON) -c 'import zipfile; z=zipfile.ZipFile("bootstrap.zip","w",zipfile.ZIP_DEFLATED); i=zipfile.ZipInfo("bootstrap"); i.external_attr=0o755<<16; z.writestr(i, open("bootstrap","rb").read(), zipfile.ZIP_DEFLATED); z.close()'
	@ls -la target/lambda/x86_64/renditions-lambda/

build-arm64:
	bash scripts/arm64.sh build

## test-arm64: the pipeline tests cross-compiled for aarch64 and run under qemu-user
test-arm64:
	bash scripts/arm64.sh test

## deploy: SAM (needs AWS credentials and the SAM CLI with cargo-lambda)
deploy:
	sam build && sam deploy

## fuzz-deps: a nightly toolchain and cargo-fuzz (libFuzzer needs nightly's sanitizer flags)
fuzz-deps:
	@$(CARGO) +nightly --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz

## fuzz-smoke: a short libFuzzer run of each fuzz target (FUZZ_SECONDS each, default 60)
fuzz-smoke: deps fuzz-deps
	bash scripts/fuzz-smoke.sh

clean:
	$(CARGO) clean
