#!/usr/bin/env bash
# hostfw toolchain check for `make deps`: a cargo and rustc at least Cargo.toml's `rust-version`,
# plus rustfmt and clippy (`make test` lints). When none is found, or too old a one, and this is
# root on Debian/Ubuntu, installs the distribution's own packages — never rustup, never a
# download from elsewhere:
#   - `cargo rustc rustfmt rust-clippy` when the release's are new enough (newer releases);
#   - else `cargo-web rustc-web rustfmt-web rust-web-clippy` (Debian 12 ships these in
#     bookworm-security; they replace an older `cargo`/`rustc`).
# Exit 0: usable cargo; 2: none (the message says what to do). Missing rustfmt/clippy only warn,
# because `make demo` builds without them.
#
# Environment: CARGO (default cargo), RUSTC (default rustc), as the Makefile passes them.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CARGO=${CARGO:-cargo}
RUSTC=${RUSTC:-rustc}
NEED=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$ROOT/Cargo.toml")
[ -n "$NEED" ] || { echo "toolchain: no rust-version in Cargo.toml" >&2; exit 2; }

# The version a command prints ("rustc 1.96.0 (...)", "cargo 1.96.0 (...)"), or nothing when
# there is no such command (not a failure: that is what this script is for).
version_of() { { "$@" --version 2>/dev/null || true; } | sed -n '1s/^[a-z-]* \([0-9][0-9.]*\).*/\1/p'; }
# at_least HAVE NEED: dotted versions, numerically.
at_least() { [ -n "$1" ] && [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
usable() {
    at_least "$(version_of "$RUSTC")" "$NEED" && at_least "$(version_of "$CARGO")" "$NEED"
}
# The upstream version apt would install for PACKAGE ("1.96.0+dfsg1-1~deb12u2" -> "1.96.0").
candidate() {
    apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: \([0-9]*:\)\{0,1\}\([0-9.]*\).*/\2/p'
}
apt_install() {
    echo "installing the Rust toolchain from the distribution: $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! usable; then
    found="$(version_of "$RUSTC")"
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "toolchain: need cargo and rustc >= $NEED (found: ${found:-none}); as root on" \
            "Debian/Ubuntu \`make deps\` installs them from the distribution" >&2
        exit 2
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    plain=$(candidate rustc) web=$(candidate rustc-web)
    if at_least "$plain" "$NEED"; then
        apt_install cargo rustc rustfmt rust-clippy
    elif at_least "$web" "$NEED"; then
        apt_install cargo-web rustc-web rustfmt-web rust-web-clippy
    else
        echo "toolchain: need rustc >= $NEED (found: ${found:-none}); the distribution offers" \
            "rustc ${plain:-none}, rustc-web ${web:-none}. On Debian 12 enable bookworm-security" \
            "(rustc-web 1.96 is there), or install Rust $NEED+ yourself" >&2
        exit 2
    fi
    usable || { echo "toolchain: installed, but $RUSTC/$CARGO on PATH is still older than $NEED" >&2; exit 2; }
fi

# rustfmt and clippy for `make test`: install the distribution's when its toolchain is the one
# in use and they are missing; otherwise say how.
if ! "$CARGO" fmt --version >/dev/null 2>&1 || ! "$CARGO" clippy --version >/dev/null 2>&1; then
    installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
    if [ "$(id -u)" = 0 ] && installed rustc-web; then
        apt_install rustfmt-web rust-web-clippy
    elif [ "$(id -u)" = 0 ] && installed rustc; then
        apt_install rustfmt rust-clippy
    else
        echo "toolchain: cargo fmt / cargo clippy missing (\`make test\` needs them;" \
            "with rustup: rustup component add rustfmt clippy)" >&2
    fi
fi
echo "toolchain: $("$RUSTC" --version), $("$CARGO" --version)"
