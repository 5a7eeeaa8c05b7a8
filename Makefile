# hostfw: build, test, demo. `make test` and `make demo` install missing system packages when
# run as root on Debian/Ubuntu, so a fresh machine needs nothing else.

CARGO ?= cargo
VERSION = $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n1)
DEB_ARCH = $(shell dpkg --print-architecture 2>/dev/null)
SYSTEM_PACKAGES := iptables ipset iproute2 procps systemd prometheus etcd-server etcd-client protobuf-compiler
APT_MISSING = $(shell for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done)

.PHONY: all build test lint deps demo package test-packages test-systemd bench clean

all: build

build:
	$(CARGO) build --release

# Install what the tests and the demo need (root on Debian/Ubuntu only; otherwise just check):
# the system packages, then a Rust toolchain from the distribution when none at least Cargo.toml's
# rust-version is found (scripts/toolchain.sh says which packages, per release).
deps:
	@missing="$(APT_MISSING)"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing: $$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing system packages: $$missing (install them, or run as root)" >&2; \
	  fi; \
	fi
	@CARGO=$(CARGO) scripts/toolchain.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Every test: unit, golden, CLI, real-kernel tests in network namespaces (need root), then the
# package build and install tests, then the .deb under a real systemd in a container.
test: deps lint
	$(CARGO) test
	scripts/test-packages.sh
	scripts/test-systemd.sh target/packages/hostfw_$(VERSION)-1_$(DEB_ARCH).deb

# The daemon protecting a throwaway network namespace with the shipped demo policies.
demo: deps
	scripts/demo.sh

# .deb and .rpm under target/packages (installs cargo-deb / cargo-generate-rpm if missing).
package: deps
	scripts/package.sh

# Build both packages and test them (lintian, rpmlint, file lists, install/remove/purge).
test-packages: deps
	scripts/test-packages.sh

# The .deb in a Debian 12 container booted with systemd-nspawn (root; the root file system is
# debootstrapped once into target/systemd-root/).
test-systemd: deps
	scripts/test-systemd.sh

# Every stage measured against the kernel tools' own floor, in namespaces (root; ~35 min;
# BENCH_ARGS=--quick for S and M on one backend). Results: docs/performance.md.
bench: deps
	scripts/bench.sh $(BENCH_ARGS)

clean:
	$(CARGO) clean
