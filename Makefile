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

.PHONY: all deps py-deps build-native demo test lint fmt bench bench-peers quality check-corpus \
        build build-arm64 build-x86_64 test-arm64 deploy loadtest loadtest-smoke fuzz-deps fuzz-smoke clean

all: build-native

## deps: system packages the build needs (nasm for libjpeg-turbo's x86-64 SIMD)
deps:
	@command -v nasm >/dev/null 2>&1 || { \
	  echo "installing nasm (libjpeg-turbo SIMD)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nasm >/dev/null; }

## py-deps: Python tools the tests use (moto's S3 server, cfn-lint, pytest; checkov in its own venv)
py-deps:
	@$(PYTHON) -c 'import moto, cfnlint, pytest' 2>/dev/null || \
	  $(PYTHON) -m pip install -q 'moto[server]==5.2.1' 'cfn-lint>=1.20' 'pytest>=7'
	@test -x "$(CHECKOV)" || { \
	  echo "installing checkov $(CHECKOV_VERSION) into $(CHECKOV_VENV)"; \
	  $(PYTHON) -m venv "$(CHECKOV_VENV)" && \
	  "$(CHECKOV_VENV)/bin/python" -m pip install -q --disable-pip-version-check 'checkov==$(CHECKOV_VERSION)'; }

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
	@if command -v sam >/dev/null 2>&1; then sam validate --lint; else echo "sam not installed: skipped sam validate --lint"; fi

fmt:
	$(CARGO) fmt --all

## bench: criterion benches per stage and end to end
bench: deps
	$(CARGO) bench --bench pipeline

## bench-peers: the same job by sharp, Pillow and `renditions render --threads 1`
bench-peers: check-corpus build-native
	bash benches/peers/setup.sh
	$(PYTHON) benches/peers/run.py --corpus $(CORPUS) --runs $(RUNS) --bin target/release/renditions \
	  --watermark assets/watermark.png --json target/bench-peers.json --markdown target/bench-peers.md

## quality: PSNR cost of the cascade and of shrink-on-load on the corpus
quality: check-corpus deps
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
