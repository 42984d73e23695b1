# sgrun — build, test, benchmark, install. Every target runs on a fresh Debian 12 as root.
# `make demo` and `make test` install what they need first (scripts/install-deps.sh).

SHELL := /bin/bash
PREFIX ?= /usr/local
# The release binary is linked statically: no ld.so work at start (sgrun re-executes itself once
# per create/run/exec, see docs/runtime.md), 1.1 MB less peak memory, and the same binary the
# cgroup-v2 VM runs (tests/cgv2/ci.sh builds exactly this).
TARGET := x86_64-unknown-linux-gnu
SGRUN_RELEASE := target/$(TARGET)/release/sgrun
SGRUN_DEBUG := target/debug/sgrun
SHIM_RELEASE := target/$(TARGET)/release/containerd-shim-sgrun-v1
CARGO ?= cargo

.PHONY: all build build-debug deps test test-unit test-integration test-cgv2 test-clients test-wordpress deps-test \
        shim test-shim \
        bench demo deps-demo demo-containers test-sites install uninstall lint fmt clean escape test-escape

all: build

deps:
	scripts/install-deps.sh --for all

deps-test:
	scripts/install-deps.sh --for test

deps-demo:
	scripts/install-deps.sh --for demo

build:
	RUSTFLAGS="$${RUSTFLAGS:+$$RUSTFLAGS }-C target-feature=+crt-static" $(CARGO) build --release -p sgrun --target $(TARGET)

# containerd-shim-sgrun-v1 (docs/shim.md), static like sgrun: one binary to drop on containerd's PATH
shim:
	RUSTFLAGS="$${RUSTFLAGS:+$$RUSTFLAGS }-C target-feature=+crt-static" $(CARGO) build --release -p containerd-shim-sgrun-v1 --target $(TARGET)

# The integration tests run these two (the shim's site mode: tests/integration/shim_site.rs)
build-debug:
	$(CARGO) build -p sgrun -p containerd-shim-sgrun-v1

# The whole suite, as CI runs it: unit tests, integration tests with real containers, the
# cgroup-v2 path in a throwaway VM, containerd/Podman/Docker driving sgrun, the WordPress
# site under its profile, and the escape suite with its weakened configs.
test: deps-test lint test-unit test-integration test-cgv2 test-clients test-shim test-wordpress test-sites test-escape
	@echo "make test: every suite passed"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-unit:
	$(CARGO) test --workspace --exclude sgrun-tests

test-integration: build-debug
	SGRUN_BIN=$(CURDIR)/$(SGRUN_DEBUG) $(CARGO) test -p sgrun-tests -- --test-threads=2

test-cgv2:
	tests/cgv2/ci.sh

test-clients: build
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/clients/run.sh all

# containerd 1.6 driving the shim: ctr (Task API) and a CRI pod with RuntimeClass handler sgrun
test-shim: build shim
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) SHIM=$(CURDIR)/$(SHIM_RELEASE) tests/shim/run.sh

# The image is built once into sgrun's store under /var/tmp/sgrun-wp-state (SGRUN_STATE_DIR) by
# `sgrun image build` and rebuilt only when
# its recipe changes (about a minute from deb.debian.org).
test-wordpress: build
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/wordpress/ci.sh

# Two tenants' WordPress sites through `sgrun site` (one shim each) and `sgrun proxy`: install
# over HTTP, isolation, crash restart, a killed shim, start --all, bad input (tests/sites/run.sh)
test-sites: build shim
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/sites/run.sh

# Figures against runc and crun in the same run; written to docs/benchmarks.md by hand with
# the date (the harness prints the Markdown table).
bench: build shim
	scripts/install-deps.sh --for bench
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/bench/run.sh --out target/bench-latest.md
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/bench/exec.sh --out target/bench-exec-latest.md
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/bench/profiles.sh | tee target/bench-profiles-latest.md
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/bench/wordpress.sh | tee target/bench-wordpress-latest.md
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/bench/tenants.sh --out target/bench-tenants-latest.md
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/bench/images.sh | tee target/bench-images-latest.md
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/bench/rootfs.sh | tee target/bench-rootfs-latest.md
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) SHIM=$(CURDIR)/$(SHIM_RELEASE) tests/bench/shim.sh | tee target/bench-shim-latest.md
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/bench/sites.sh | tee target/bench-sites-latest.md

# The escape suite (tests/escape/README.md): `make escape RUNTIME=/usr/sbin/runc CONFIG=tenant`.
# Without RUNTIME it tests the release sgrun, built first.
escape: $(if $(RUNTIME),,build)
	tests/escape/run.sh --runtime $(if $(RUNTIME),$(RUNTIME),$(CURDIR)/$(SGRUN_RELEASE)) --config $(if $(CONFIG),$(CONFIG),default)

# sgrun's tenant config passes every vector but the known gaps, and each weakening opens the
# vectors it should: the suite can fail.
test-escape: build
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) tests/escape/weakened.sh

# The main job: two tenants' WordPress sites behind the front proxy (scripts/demo.sh)
demo: deps-demo build shim
	SGRUN=$(CURDIR)/$(SGRUN_RELEASE) scripts/demo.sh

# The first demo: two tenants' busybox containers, an SRE's exec, no shared view
demo-containers: build
	scripts/install-deps.sh --for test
	scripts/demo-containers.sh $(CURDIR)/$(SGRUN_RELEASE)

install: build shim
	install -D -m 0755 $(SGRUN_RELEASE) $(DESTDIR)$(PREFIX)/bin/sgrun
	install -D -m 0755 $(SHIM_RELEASE) $(DESTDIR)$(PREFIX)/bin/containerd-shim-sgrun-v1

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/sgrun $(DESTDIR)$(PREFIX)/bin/containerd-shim-sgrun-v1

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
