#!/usr/bin/env bash
# Build hostfw_<version>-1_<arch>.deb (cargo-deb) and hostfw-<version>-1.<arch>.rpm
# (cargo-generate-rpm) from one stripped release build, into $PACKAGE_OUT (default
# target/packages). Installs the two cargo tools into ~/.cargo/bin when missing.
# Package contents are declared in Cargo.toml ([package.metadata.deb] and
# [package.metadata.generate-rpm]); this script only prepares their inputs and runs the tools.
#
# Usage: scripts/package.sh            (prints the two package paths, last two lines of stdout)
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
OUT=${PACKAGE_OUT:-target/packages}
# Pinned so that the package layout cannot change under us with a new tool release.
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

say() { printf 'package.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

install_tool() { # crate version binary
    local crate=$1 version=$2 binary=$3
    if command -v "$binary" >/dev/null 2>&1; then
        return
    fi
    say "installing $crate $version (cargo install --locked; a one-time build of a few minutes)"
    local start=$SECONDS
    "$CARGO" install --locked --quiet "$crate@$version"
    say "installed $crate in $((SECONDS - start)) s"
}

# The versions a package states must agree, or the .deb's changelog and the binary disagree.
check_versions() {
    local version deb_version
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
    [ -n "$version" ] || die "no version in Cargo.toml"
    deb_version=$(sed -n '1s/^hostfw (\([^)]*\)).*/\1/p' packaging/deb/changelog)
    [ "$deb_version" = "$version-1" ] ||
        die "packaging/deb/changelog starts with $deb_version, Cargo.toml says $version (expected $version-1)"
    grep -q "^## \[$version\]" CHANGELOG.md || die "CHANGELOG.md has no '## [$version]' section"
    echo "$version"
}

main() {
    export PATH="$HOME/.cargo/bin:$PATH"
    [ -f systemd/hostfw.service ] ||
        die "systemd/hostfw.service is missing (it comes from the daemon branch: git merge main)"
    [ -f etc/hostfw/policies.d/README ] || die "etc/hostfw/policies.d/README is missing"
    cmp -s etc/default/hostfw etc/sysconfig/hostfw ||
        die "etc/default/hostfw and etc/sysconfig/hostfw differ; they document the same variables"

    # cargo-deb computes the libc dependency with it; without it the .deb would lack one.
    command -v dpkg-shlibdeps >/dev/null || die "dpkg-shlibdeps not found (apt-get install dpkg-dev)"

    local version
    version=$(check_versions)
    install_tool cargo-deb "$CARGO_DEB_VERSION" cargo-deb
    install_tool cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION" cargo-generate-rpm

    say "release build"
    "$CARGO" build --release --locked --bin hostfw

    say "man page and completions"
    rm -rf target/assets
    "$CARGO" run --quiet --locked --example gen-assets -- target/assets >/dev/null
    # -n: no name or time stamp in the header, so the same page gives the same bytes.
    gzip -9n --keep --force target/assets/hostfw.8 target/assets/THIRD-PARTY-NOTICES

    mkdir -p "$OUT"
    local arch rpm_arch deb rpm
    arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
    rpm_arch=$(uname -m)
    deb="$OUT/hostfw_${version}-1_${arch}.deb"
    rpm="$OUT/hostfw-${version}-1.${rpm_arch}.rpm"
    rm -f "$deb" "$rpm"

    say "building $deb"
    "$CARGO" deb --no-build --locked --output "$deb" >/dev/null
    say "building $rpm"
    # auto-req builtin: the ldd-based library requirements (libc), as rpmbuild would add them.
    "$CARGO" generate-rpm --auto-req builtin --output "$rpm" >/dev/null

    [ -f "$deb" ] || die "cargo deb did not write $deb"
    [ -f "$rpm" ] || die "cargo generate-rpm did not write $rpm"
    echo "$deb"
    echo "$rpm"
}

main "$@"
