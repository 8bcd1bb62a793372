# Ambient Code Platform — the two commands a user needs:
#   make run    set up what is missing, build, start local mode on http://127.0.0.1:3000
#   make test   set up what is missing (Chromium too), lint, run every test, browser tests included
# Every set-up step is skipped when its tool is already there at the right version.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath .)
NODE_BIN := $(ROOT)/end2end/node_modules/.bin
# npm's binaryen (wasm-opt 132) must win over any other wasm-opt: Debian's breaks the release
# WASM. cargo-leptos finds wasm-bindgen and wasm-opt on PATH and then downloads nothing.
export PATH := $(NODE_BIN):$(HOME)/.cargo/bin:$(PATH)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
export AMBIENT_CLAUDE_BIN ?= $(ROOT)/tools/claude-code/node_modules/.bin/claude

CARGO_LEPTOS_VERSION := 0.3.10
# The wasm-bindgen CLI must be exactly the crate's version (pinned with = in Cargo.toml).
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup setup-rust setup-npm setup-browser build run test lint unit e2e crds bench bench-ui loadtest

help:
	@echo "make run    build and start the platform in local mode (http://127.0.0.1:3000)"
	@echo "make test   lint and run every test, including the browser tests"
	@echo "make setup  install the build tools only"
	@echo "make bench, make bench-ui, make loadtest: benchmarks (figures in BENCHMARKS.md)"

setup: setup-rust setup-npm

setup-rust:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@if [ "$$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $(WASM_BINDGEN_VERSION)" ]; then \
		echo "==> installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
		cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --force; \
	fi
	@if ! cargo leptos --version 2>/dev/null | grep -qF "$(CARGO_LEPTOS_VERSION)"; then \
		echo "==> installing cargo-leptos $(CARGO_LEPTOS_VERSION) (about 10 minutes, once)"; \
		CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
			cargo install --locked cargo-leptos --version $(CARGO_LEPTOS_VERSION) --force; \
	fi

setup-npm: end2end/node_modules/.installed tools/claude-code/node_modules/.installed

end2end/node_modules/.installed: end2end/package.json end2end/package-lock.json
	cd end2end && npm ci --no-audit --no-fund
	@touch $@

tools/claude-code/node_modules/.installed: tools/claude-code/package.json tools/claude-code/package-lock.json
	cd tools/claude-code && npm ci --no-audit --no-fund
	@touch $@

# Debian's Chromium for Playwright (never `playwright install`: it downloads from the web).
# The first install can fail on this image's apt hooks; retrying works.
setup-browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "==> installing chromium"; \
		for i in 1 2 3; do \
			DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium && break; \
			$(SUDO) apt-get update -q || true; \
		done; \
		[ -x /usr/bin/chromium ]; \
	fi

build: setup
	cargo leptos build --release --split
	./target/release/server --precompress-assets > /dev/null
	cargo build --release -p runner

run: build
	./target/release/server

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p app --features hydrate --target wasm32-unknown-unknown -- -D warnings
	cargo clippy -p model --target wasm32-unknown-unknown -- -D warnings

unit: setup
	cargo build --workspace --bins
	cargo test --workspace

e2e: setup setup-browser
	cargo leptos build --release --split
	./target/release/server --precompress-assets > /dev/null
	cargo build --release -p runner -p mock-anthropic
	cd end2end && npx playwright test

test: lint unit e2e

# Benchmarks (figures go to BENCHMARKS.md); release builds.
bench: setup
	cargo build --release -p runner -p mock-anthropic
	cargo bench -p server --bench control_plane
	cargo bench -p server --bench runner

# The session page in Chromium: bytes transferred and time to first entry (BENCHMARKS.md, "Web UI").
bench-ui: setup setup-browser
	cargo leptos build --release --split
	./target/release/server --precompress-assets > /dev/null
	cargo build --release -p runner -p mock-anthropic
	cd end2end && npx playwright test --config bench.config.ts

# The hub's load test (BENCHMARKS.md, "Event hub").
loadtest: setup
	cargo leptos build --release --split
	./target/release/server --precompress-assets > /dev/null
	cargo build --release -p server --features test-util --bin loadgen
	for args in "--sessions 1 --rate 5000" "--sessions 100 --rate 17000" "--sessions 1000 --rate 17000"; do \
		./target/release/loadgen $$args --viewers 3 --seconds 10; done

crds:
	cargo run -q -p operator --bin crdgen
