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

# checkov (template security scan) lives in its own venv, outside the work tree: checkov 3.3
# pins older boto3/botocore/networkx than moto and cfn-lint use, so it must not share their
# site-packages. CHECKOV=/path/to/checkov uses another installation instead.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/renditions/checkov-$(CHECKOV_VERSION)
CHECKOV ?= $(CHECKOV_VENV)/bin/checkov
# --skip-download: no calls to the Prisma Cloud API (guidelines, severities); offline and quiet.
CHECKOV_ARGS := --framework cloudformation --skip-download --compact --quiet

# cargo-lambda (and the zig it cross-compiles with) and the SAM CLI share one venv outside the
# work tree. cargo-lambda runs zig as the `ziglang` module of the first `python3` on PATH, and
# `sam build` (BuildMethod rust-cargolambda) runs `cargo lambda build`: so every target that runs
# either puts this venv's bin first on PATH (DEPLOY_PATH). DEPLOY_VENV=/path uses another venv.
CARGO_LAMBDA_VERSION := 1.9.2
ZIGLANG_VERSION := 0.17.1
SAM_CLI_VERSION := 1.170.0
DEPLOY_VENV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/renditions/deploy
DEPLOY_PATH := $(DEPLOY_VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
# Lambda packages: target/lambda/<arch>/renditions-lambda/bootstrap.zip
LAMBDA_DIR := target/lambda
CARGO_LAMBDA_BUILD := $(CARGO) lambda build --release --bin renditions-lambda --output-format zip

.PHONY: all deps py-deps deploy-deps arm64-target build-native demo test lint fmt bench bench-peers quality \
        check-corpus peerfix build build-arm64 build-x86_64 test-arm64 test-rie test-rie-arm64 test-watch hostile-inputs qemu-deps \
        sam-build deploy loadtest loadtest-smoke bench-traces \
        fuzz-deps fuzz-smoke clean

all: build-native

## deps: system packages the build needs (nasm for libjpeg-turbo's x86-64 SIMD)
deps:
	@command -v nasm >/dev/null 2>&1 || { \
	  echo "installing nasm (libjpeg-turbo SIMD)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nasm >/dev/null; }

## py-deps: Python tools the tests use (moto's S3 server, cfn-lint, pytest, Pillow, OpenTelemetry's
## protobuf schema for the OTLP check; checkov in its own venv)
py-deps:
	@$(PYTHON) -c 'import moto, cfnlint, pytest, PIL, opentelemetry.proto' 2>/dev/null || \
	  $(PYTHON) -m pip install -q 'moto[server]==5.2.1' 'cfn-lint>=1.20' 'pytest>=7' 'pillow>=10' \
	    'opentelemetry-proto==1.45.2'
	@test -x "$(CHECKOV)" || { \
	  echo "installing checkov $(CHECKOV_VERSION) into $(CHECKOV_VENV)"; \
	  $(PYTHON) -m venv "$(CHECKOV_VENV)" && \
	  "$(CHECKOV_VENV)/bin/python" -m pip install -q --disable-pip-version-check 'checkov==$(CHECKOV_VERSION)'; }

## deploy-deps: cargo-lambda, zig and the SAM CLI (PyPI wheels) in DEPLOY_VENV
deploy-deps:
	@if [ -x "$(DEPLOY_VENV)/bin/cargo-lambda" ] && [ -x "$(DEPLOY_VENV)/bin/sam" ] && \
	    "$(DEPLOY_VENV)/bin/python" -c 'import ziglang' 2>/dev/null; then :; else \
	  echo "installing cargo-lambda $(CARGO_LAMBDA_VERSION), zig (ziglang $(ZIGLANG_VERSION)) and SAM CLI $(SAM_CLI_VERSION) into $(DEPLOY_VENV)"; \
	  $(PYTHON) -m venv "$(DEPLOY_VENV)" && \
	  "$(DEPLOY_VENV)/bin/python" -m pip install -q --disable-pip-version-check \
	    'cargo-lambda==$(CARGO_LAMBDA_VERSION)' 'ziglang==$(ZIGLANG_VERSION)' 'aws-sam-cli==$(SAM_CLI_VERSION)'; \
	fi

## arm64-target: the Rust standard library for aarch64-unknown-linux-gnu (Lambda's arm64)
arm64-target:
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

build-native: deps
	$(CARGO) build --release --bins

## demo: the main job on embedded defaults: an in-process S3 server, sample uploads, renditions
demo: deps
	$(CARGO) run --release --example demo

## test: everything CI runs
test: deps py-deps
	$(CARGO) test
	CHECKOV="$(CHECKOV)" $(PYTHON) -m pytest -q tests/template_test.py
	$(MAKE) loadtest-smoke LOADTEST_BIN=target/debug/renditions-lambda
	$(MAKE) peerfix

## peerfix: the 80 peer fixtures of ../shared/corpus/peerfix against Pillow + lcms2 (skipped
## when the corpus is absent); PEERFIX=DIR points elsewhere
peerfix:
	@test -x target/debug/renditions || $(CARGO) build --bin renditions
	bash loadtest/setup.sh moto
	loadtest/.venv/bin/python -m pytest -q tests/peerfix_test.py

## loadtest-smoke: 50 uploads through moto S3 -> SQS -> one real execution environment.
## Uses CORPUS when it holds photos, else the repository's assets/samples (+ images made with Pillow).
LOADTEST_BIN ?= target/release/renditions-lambda
loadtest-smoke:
	@test -x $(LOADTEST_BIN) || $(CARGO) build --bin renditions-lambda
	bash loadtest/setup.sh moto
	loadtest/.venv/bin/python loadtest/run.py --n 50 --envs 1 --s3 moto --bin $(LOADTEST_BIN) --out loadtest-report/smoke \
	  --photos "$(CORPUS)" --fallback-to-samples

## loadtest: the full load test (N uploads, ENVS execution environments, S3=localstack|moto) on CORPUS
loadtest: check-corpus deps
	$(CARGO) build --release --bin renditions-lambda
	bash loadtest/setup.sh "$(S3)"
	loadtest/.venv/bin/python loadtest/run.py --n $(N) --envs $(ENVS) --s3 $(S3) --bin target/release/renditions-lambda \
	  --photos "$(CORPUS)"

## check-corpus: the photo folder the measuring targets need (bench-peers, quality, loadtest)
check-corpus:
	@if [ -d "$(CORPUS)" ] && ls -A "$(CORPUS)" | grep -qiE '\.(jpe?g|png|webp|gif|tiff?|bmp)$$'; then \
	  echo "corpus: $(CORPUS)"; \
	else \
	  echo "error: no photos in CORPUS=$(CORPUS) (the default is ../shared/corpus/photos, beside the repository)." >&2; \
	  echo "  '$(or $(MAKECMDGOALS),this target)' measures a photo corpus; point it at a folder of JPEG/PNG/WebP photos:" >&2; \
	  echo "    make $(or $(MAKECMDGOALS),<target>) CORPUS=/path/to/photos" >&2; \
	  echo "  (make test and make loadtest-smoke need no corpus: they fall back to assets/samples.)" >&2; \
	  exit 2; \
	fi

## lint: rustfmt, clippy, cfn-lint and checkov (template security posture: 0 failed checks;
## every accepted finding is a skip with its reason in template.yaml's Metadata)
lint: deps py-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	cfn-lint template.yaml
	"$(CHECKOV)" -f template.yaml $(CHECKOV_ARGS)
	@if PATH="$(DEPLOY_PATH)" command -v sam >/dev/null 2>&1; then PATH="$(DEPLOY_PATH)" sam validate --lint; \
	  else echo "sam not installed (make deploy-deps): skipped sam validate --lint"; fi

fmt:
	$(CARGO) fmt --all

## bench: criterion benches per stage and end to end
bench: deps
	$(CARGO) bench --bench pipeline

## bench-traces: what TRACES=off|xray|otlp cost the release function (cold start, time per invocation)
bench-traces: build-native py-deps
	$(PYTHON) benches/traces_cost.py target/release/renditions-lambda --rounds $(or $(ROUNDS),3) --invokes 40

## bench-peers: the same job by sharp, Pillow and `renditions render --threads 1`
bench-peers: check-corpus build-native
	bash benches/peers/setup.sh
	$(PYTHON) benches/peers/run.py --corpus $(CORPUS) --runs $(RUNS) --bin target/release/renditions \
	  --watermark assets/watermark.png --json target/bench-peers.json --markdown target/bench-peers.md

## quality: PSNR cost of the cascade and of shrink-on-load on the corpus
quality: check-corpus deps
	$(CARGO) run --release --example quality -- $(CORPUS)

## build: the Lambda zips with cargo-lambda (zig as C compiler and linker; only the function's
## binary), checked: ELF of the right architecture, GLIBC <= 2.34 (provided.al2023)
build: build-x86_64 build-arm64

build-x86_64: deps deploy-deps
	PATH="$(DEPLOY_PATH)" $(CARGO_LAMBDA_BUILD) --x86-64 --lambda-dir $(LAMBDA_DIR)/x86_64
	bash scripts/lambda-check.sh $(LAMBDA_DIR)/x86_64/renditions-lambda/bootstrap.zip x86_64

build-arm64: deploy-deps arm64-target
	PATH="$(DEPLOY_PATH)" $(CARGO_LAMBDA_BUILD) --arm64 --lambda-dir $(LAMBDA_DIR)/arm64
	bash scripts/lambda-check.sh $(LAMBDA_DIR)/arm64/renditions-lambda/bootstrap.zip arm64

## test-rie: the x86_64 zip of build-x86_64 under AWS's Runtime Interface Emulator (from the SAM
## CLI wheel) against moto S3: the crate's official event fixtures, then every hostile input
## of tests/hostile.rs through the one runtime process (tests/rie_test.py)
HOSTILE_INPUTS ?= target/hostile-inputs
RIE_TEST = RIE_REQUIRED=1 HOSTILE_INPUTS="$(CURDIR)/$(HOSTILE_INPUTS)" DEPLOY_VENV="$(DEPLOY_VENV)" \
  $(PYTHON) -m pytest -q -s -rs tests/rie_test.py
test-rie: build-x86_64 py-deps hostile-inputs
	RIE_BOOTSTRAP="$(CURDIR)/$(LAMBDA_DIR)/x86_64/renditions-lambda/bootstrap.zip" $(RIE_TEST)

## test-rie-arm64: the same test with the arm64 bootstrap that `sam build` packs, under qemu-user
## (the emulator runs natively): shares the arm64 build with sam-build
SAM_BOOTSTRAP := .aws-sam/build/RenditionsFunction/bootstrap
test-rie-arm64: sam-build py-deps hostile-inputs qemu-deps
	RIE_BOOTSTRAP="$(CURDIR)/$(SAM_BOOTSTRAP)" $(RIE_TEST)

## test-watch: the function under `cargo lambda watch` (it runs `cargo run`: the dev build that
## `make test` made), invoked by `cargo lambda invoke` with the official fixtures (tests/watch_test.py)
test-watch: deploy-deps py-deps
	WATCH_REQUIRED=1 DEPLOY_VENV="$(DEPLOY_VENV)" $(PYTHON) -m pytest -q -s -rs tests/watch_test.py

## hostile-inputs: every input of tests/hostile.rs written to HOSTILE_INPUTS (its HOSTILE_DUMP)
hostile-inputs:
	rm -rf $(HOSTILE_INPUTS)
	HOSTILE_DUMP="$(CURDIR)/$(HOSTILE_INPUTS)" $(CARGO) test --test hostile -- --exact hostile_inputs_are_rendered_or_rejected_within_limits

## qemu-deps: qemu-user and an aarch64 glibc, to run aarch64 binaries on x86_64
qemu-deps:
	@command -v qemu-aarch64-static >/dev/null 2>&1 && [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || { \
	  echo "installing qemu-user-static libc6-arm64-cross"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static libc6-arm64-cross >/dev/null; }

## test-arm64: the pipeline tests cross-compiled for aarch64 and run under qemu-user
test-arm64:
	bash scripts/arm64.sh test

## sam-build: `sam validate --lint` and `sam build` as users run them (default Architecture arm64,
## rust-cargolambda on the host, no Docker), then checks .aws-sam/build/RenditionsFunction/bootstrap.
## Shares target/aarch64-unknown-linux-gnu with build-arm64 (same command and flags).
sam-build: deploy-deps arm64-target
	PATH="$(DEPLOY_PATH)" sam validate --lint
	PATH="$(DEPLOY_PATH)" sam build
	bash scripts/lambda-check.sh .aws-sam/build/RenditionsFunction/bootstrap arm64

## deploy: SAM, the full deployment (needs AWS credentials): buckets, function, trigger, DLQ
deploy: sam-build
	PATH="$(DEPLOY_PATH)" sam deploy

## fuzz-deps: a nightly toolchain and cargo-fuzz (libFuzzer needs nightly's sanitizer flags)
fuzz-deps:
	@$(CARGO) +nightly --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz

## fuzz-smoke: a short libFuzzer run of each fuzz target (FUZZ_SECONDS each, default 60)
fuzz-smoke: deps fuzz-deps
	bash scripts/fuzz-smoke.sh

clean:
	$(CARGO) clean
