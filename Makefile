# Ambient Code Platform — the two commands a user needs:
#   make run    set up what is missing, build, start local mode on http://127.0.0.1:3000
#   make test   set up what is missing (Chromium too), lint, run every test, browser tests included
# Every set-up step is skipped when its tool is already there at the right version.
#
# One release build serves everything: `make run`, the Rust tests, the browser tests and the
# benchmarks use the same artifacts (same profile, same features, same environment; see
# .cargo/config.toml), so after `make test` a `make run` builds nothing. The web UI's assets
# are built by `cargo xtask site` (xtask/), not cargo-leptos.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath .)
export PATH := $(HOME)/.cargo/bin:$(PATH)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
export AMBIENT_CLAUDE_BIN ?= $(ROOT)/tools/claude-code/node_modules/.bin/claude
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
K8S_BIN := $(HOME)/.cache/ambient-code/k8s-v1.20.2
K8S_RUN := $(ROOT)/target/k8s-testenv

.PHONY: help setup setup-rust setup-npm setup-sandbox setup-e2e setup-browser setup-fuzz setup-k8s setup-kubeval setup-images images build run test \
	lint unit e2e fuzz leftovers crds bench bench-cli bench-k8s bench-ui loadtest

help:
	@echo "make run    build and start the platform in local mode (http://127.0.0.1:3000)"
	@echo "make test   lint and run every test, including the browser tests"
	@echo "make setup  install the build tools only"
	@echo "make bench, make bench-ui, make loadtest: benchmarks (figures in BENCHMARKS.md)"

setup: setup-rust setup-npm setup-sandbox

# The browser's bundle is built with its own standard library (`-Zbuild-std`, see xtask):
# the wasm target and the library's sources.
setup-rust:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -qx rust-src || rustup component add rust-src

# wasm-opt and esbuild for the UI's build; the pinned claude CLI for the runner.
setup-npm: tools/web/node_modules/.installed tools/claude-code/node_modules/.installed

tools/web/node_modules/.installed: tools/web/package.json tools/web/package-lock.json
	cd tools/web && npm ci --no-audit --no-fund
	@touch $@

tools/claude-code/node_modules/.installed: tools/claude-code/package.json tools/claude-code/package-lock.json
	cd tools/claude-code && npm ci --no-audit --no-fund
	@touch $@

setup-e2e: end2end/node_modules/.installed setup-browser

end2end/node_modules/.installed: end2end/package.json end2end/package-lock.json
	cd end2end && npm ci --no-audit --no-fund
	@touch $@

# bubblewrap: the agent's sandbox in local mode; slirp4netns: its network of its own (see
# README, "What the sandbox protects").
setup-sandbox:
	@if ! command -v bwrap > /dev/null || ! command -v slirp4netns > /dev/null; then \
		echo "==> installing bubblewrap and slirp4netns"; \
		for i in 1 2 3; do \
			DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends bubblewrap slirp4netns && break; \
			$(SUDO) apt-get update -q || true; \
		done; \
		command -v bwrap > /dev/null && command -v slirp4netns > /dev/null; \
	fi

# schemathesis (PyPI) for the API fuzzer, in a virtualenv kept outside the clone.
SCHEMATHESIS_VERSION := 4.32.5
SCHEMATHESIS := $(HOME)/.cache/ambient-code/schemathesis-$(SCHEMATHESIS_VERSION)/bin/schemathesis
setup-fuzz: $(SCHEMATHESIS)

$(SCHEMATHESIS):
	python3 -m venv $(HOME)/.cache/ambient-code/schemathesis-$(SCHEMATHESIS_VERSION)
	$(HOME)/.cache/ambient-code/schemathesis-$(SCHEMATHESIS_VERSION)/bin/pip install -q \
		--disable-pip-version-check schemathesis==$(SCHEMATHESIS_VERSION)

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

# The server, the runner, the mock model, the tools and every test (release) in one compile,
# then the UI's assets. Binaries and tests are built together so that both see the same
# features (a `--bins` build leaves out the dev-dependencies' features, and the test build
# then compiled half the workspace again); `make run`, the images, `cargo test --release` and
# the fuzzer all use these artifacts. The benches are built by `make bench*` when asked for.
CARGO_BUILD := cargo build --release --workspace --exclude xtask --lib --bins --tests
build: setup
	$(CARGO_BUILD)
	cargo xtask site
	./target/release/server --precompress-assets > /dev/null

run: build
	@echo "command-line client: ./target/release/ambient (ambient login http://127.0.0.1:3000; see README)"
	./target/release/server

# Clippy in the release profile: its build scripts and proc-macros are the release build's,
# compiled once for both (in the dev profile they were compiled a second time).
lint: setup
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	cargo clippy --release -p app -p model --features app/hydrate --target wasm32-unknown-unknown -- -D warnings

# The Rust tests. The operator's cluster tests need a real API server: the test cluster
# (etcd, kube-apiserver and kube-controller-manager v1.20.2, built once from Debian's source
# package into $(K8S_BIN)) runs on loopback for the duration and is stopped after, pass or fail.
# The images come first: the container scenarios run runner pods from them.
unit: build setup-k8s setup-kubeval images
	tools/k8s/testenv.sh start $(K8S_BIN) $(K8S_RUN)
	{ AMBIENT_TEST_KUBECONFIG=$(K8S_RUN)/kubeconfig cargo test --release --workspace --exclude xtask \
		&& tools/k8s/check-manifests.sh $(K8S_RUN)/kubeconfig $(KUBEVAL); } \
		|| { rc=$$?; tools/k8s/testenv.sh stop $(K8S_RUN); exit $$rc; }
	tools/k8s/testenv.sh stop $(K8S_RUN)

# kubernetes-validate (PyPI) for the manifests in deploy/ (tools/k8s/check-manifests.sh).
KUBEVAL_VERSION := 1.37.0
KUBEVAL := $(HOME)/.cache/ambient-code/kubernetes-validate-$(KUBEVAL_VERSION)/bin/kubernetes-validate
setup-kubeval: $(KUBEVAL)

$(KUBEVAL):
	python3 -m venv $(HOME)/.cache/ambient-code/kubernetes-validate-$(KUBEVAL_VERSION)
	$(HOME)/.cache/ambient-code/kubernetes-validate-$(KUBEVAL_VERSION)/bin/pip install -q \
		--disable-pip-version-check kubernetes-validate==$(KUBEVAL_VERSION)

# kube-apiserver and kube-controller-manager for the tests (about 7 minutes, once per machine),
# with etcd and kubectl from Debian.
setup-k8s:
	tools/k8s/build.sh $(K8S_BIN)

e2e: build setup-e2e
	tools/ports-free.sh "the browser tests" 3101 3102 3199
	cd end2end && npx playwright test
	@$(MAKE) --no-print-directory leftovers

# Fails if a process the browser tests started (a runner, an agent: their working
# directory is under the tests' data directory) outlived the suite.
leftovers:
	@left=""; \
	for p in /proc/[0-9]*; do \
		cwd=$$(readlink "$$p/cwd" 2>/dev/null) || continue; \
		case "$$cwd" in /tmp/ambient-e2e-*|/tmp/ambient-bench-*) \
			left="$$left$${p#/proc/} $$(tr '\0' ' ' < $$p/cmdline 2>/dev/null) (in $$cwd)"$$'\n';; \
		esac; \
	done; \
	if [ -n "$$left" ]; then echo "processes left behind by the browser tests:"; printf '%s' "$$left"; exit 1; fi

test: lint images unit e2e fuzz

# The server, operator and runner images, built offline (base images from Debian packages
# with mmdebstrap, then buildah) and smoke-tested with podman (tools/images.sh).
images: build setup-images
	tools/images.sh

setup-images:
	@if ! command -v buildah > /dev/null || ! command -v podman > /dev/null \
		|| ! command -v mmdebstrap > /dev/null || ! command -v runc > /dev/null; then \
		echo "==> installing buildah, podman, mmdebstrap, runc"; \
		for i in 1 2 3; do \
			DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends \
				buildah podman mmdebstrap runc uidmap && break; \
			$(SUDO) apt-get update -q || true; \
		done; \
	fi

# The REST API fuzzed from its OpenAPI document (tools/fuzz-api.sh).
fuzz: build setup-fuzz
	tools/fuzz-api.sh $(SCHEMATHESIS)

# Benchmarks (figures go to BENCHMARKS.md), on the same release build.
bench: build
	cargo bench -p server --bench control_plane
	cargo bench -p server --bench runner

# The `ambient` client: start-up and a REST call, `logs -f` and export of a finished session.
bench-cli: build
	tools/bench-cli.sh 20

# Kubernetes mode on the test API server: 1,000 sessions → Jobs and the operator's peak RSS;
# create → runner connected through the test kubelet (BENCHMARKS.md).
bench-k8s: build setup-k8s
	tools/k8s/testenv.sh start $(K8S_BIN) $(K8S_RUN)
	{ AMBIENT_TEST_KUBECONFIG=$(K8S_RUN)/kubeconfig cargo bench -p operator --bench cluster \
		&& AMBIENT_TEST_KUBECONFIG=$(K8S_RUN)/kubeconfig cargo bench -p server --bench cluster; } \
		|| { rc=$$?; tools/k8s/testenv.sh stop $(K8S_RUN); exit $$rc; }
	tools/k8s/testenv.sh stop $(K8S_RUN)

# The session page in Chromium: bytes transferred and time to first entry (BENCHMARKS.md, "Web UI").
bench-ui: build setup-e2e
	cd end2end && npx playwright test --config bench.config.ts
	@$(MAKE) --no-print-directory leftovers

# The hub's load test (BENCHMARKS.md, "Event hub").
loadtest: build
	for args in "--sessions 1 --rate 5000" "--sessions 100 --rate 17000" "--sessions 1000 --rate 17000"; do \
		./target/release/loadgen $$args --viewers 3 --seconds 10; done

crds:
	cargo run -q -p operator --bin crdgen
