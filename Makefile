# oracle-watchdog build, test and packaging entry points.
# `make test` is what CI runs (via .ci/run); it installs what it needs itself.

SHELL := /bin/bash
CARGO ?= cargo
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
REV := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
export OW_BUILD_REV := $(REV)
DIST := dist
TARGETS := x86_64-unknown-linux-musl aarch64-unknown-linux-musl
# Cross C toolchain for ring on aarch64 musl (Debian's gcc-aarch64-linux-gnu).
export CC_aarch64_unknown_linux_musl := aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER := aarch64-linux-gnu-gcc
# Packages the tests use: python venv support, file(1) for static checks,
# openssl(1) for the CONSUL_CACERT TLS test.
TEST_APT := python3-venv file openssl wireguard-go wireguard-tools iproute2

.PHONY: all build release audit fuzz test test-deps test-rust test-python lint fmt fmt-check clippy static run clean deps demo test-wg-kernel chaos bench

all: build

## build: debug build of the daemon and the stand-ins
build:
	$(CARGO) build --workspace --bins

## release: optimised native binary in target/release
release:
	$(CARGO) build --release --bin oracle-watchdog

deps:
	@scripts/ensure.sh apt $(TEST_APT) venv

## test: everything a change must pass (unit, integration against stand-ins, Python cross-checks)
test: deps build test-deps test-rust test-python

## test-deps: the design forbids an async runtime: no tokio in the dependency tree
test-deps:
	@if $(CARGO) tree -e normal -i tokio >/dev/null 2>&1; then \
	  echo "tokio is in the dependency tree:"; $(CARGO) tree -e normal -i tokio; exit 1; \
	else echo "ok: no tokio in the normal dependency tree"; fi

test-rust:
	$(CARGO) test --workspace --all-targets

test-python:
	STANDINS_BIN=$(CURDIR)/target/debug/watchdog-standins .venv/bin/python -m pytest -q tests/python

## lint: formatting and clippy with warnings as errors
lint: fmt-check clippy

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## static: stripped static musl binaries for x86_64 and aarch64 in dist/
static:
	@scripts/ensure.sh rust-targets apt gcc-aarch64-linux-gnu file
	@mkdir -p $(DIST)
	@for t in $(TARGETS); do \
	  $(CARGO) build --release --locked --target $$t --bin oracle-watchdog || exit 1; \
	  arch=$${t%%-*}; out=$(DIST)/oracle-watchdog-$(VERSION)-linux-$$arch; \
	  cp target/$$t/release/oracle-watchdog $$out; \
	  printf '%-48s %8d bytes (%s KiB)  %s\n' $$out $$(stat -c %s $$out) $$(( $$(stat -c %s $$out) / 1024 )) \
	    "$$(file -b $$out | grep -Eo '(ARM aarch64|x86-64)|static(-pie)? linked|stripped' | paste -sd, -)"; \
	done

## audit: RustSec advisories (offline snapshot) + licence allow-list + bans
audit:
	@scripts/audit.sh

## fuzz: every cargo-fuzz target (fuzz/) for FUZZ_SECONDS each on nightly; runs and crashes per target
FUZZ_SECONDS ?= 60
fuzz:
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

## run: monitor mode against $CONSUL_HTTP_ADDR with text logs (node name = hostname)
run: build
	./target/debug/oracle-watchdog -mode monitor -log-format text $(ARGS)

clean:
	$(CARGO) clean
	rm -rf $(DIST)

## test-wg-kernel: the WireGuard re-resolver against kernel WireGuard, in a qemu VM (~2 min; not in `make test`)
test-wg-kernel:
	@scripts/test-wg-kernel.sh

## chaos: named fault scenarios (Consul, OCI, Cloudflare, IP providers, WireGuard,
## killed agents, clock jumps, ...) against the real binary; not part of `make test`
chaos:
	@scripts/ensure.sh apt faketime
	$(CARGO) build --bin oracle-watchdog -p oracle-watchdog
	$(CARGO) build -p watchdog-chaos
	OW_BIN=$(CURDIR)/target/debug/oracle-watchdog ./target/debug/watchdog-chaos $(ARGS)

## bench: performance report (size, idle RSS/CPU, latencies, scale, restart vs OCI CLI) in bench/REPORT.md (~6 min; not in `make test`)
OCI_CLI_VERSION := 3.95.1
bench: static
	@scripts/ensure.sh apt time venv
	@.venv/bin/oci --version 2>/dev/null | grep -qx '$(OCI_CLI_VERSION)' || \
	  .venv/bin/pip install -q --disable-pip-version-check oci-cli==$(OCI_CLI_VERSION)
	$(CARGO) build --release --locked -p watchdog-bench
	target/release/watchdog-bench --out bench/REPORT.md \
	  --x86 $(DIST)/oracle-watchdog-$(VERSION)-linux-x86_64 --aarch64 $(DIST)/oracle-watchdog-$(VERSION)-linux-aarch64

## demo: an outage and its recovery against local stand-ins, in about a minute
demo: build
	@scripts/demo.sh

# Packaging and distribution: deb, docker, push, test-dist.
include mk/dist.mk
