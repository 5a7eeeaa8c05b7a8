#!/usr/bin/env bash
# Build the .deb and .rpm (scripts/package.sh) and test them: lintian and rpmlint, exact file
# lists, scriptlets and config marks against packaging/tests/, and the whole lifecycle (install,
# upgrade with an admin-edited conffile, remove, purge/erase) of both packages.
#
# Where the lifecycle runs, and why: in a throwaway root, never on this machine itself. The
# root is an overlay of / (so dpkg, rpm, perl, iptables, man are the real ones) whose writes go
# to a tmpfs, inside private mount and network namespaces. dpkg and rpm run exactly as on a
# real host (maintainer scripts and scriptlets included), but:
#  - the prerm/%preun `hostfw flush`, and the `hostfw apply` this test runs to give it something
#    to flush, reach only the private network namespace's iptables and ipsets;
#  - systemctl is a recording stub (packaging/tests/systemctl-stub) and /run/systemd/system
#    exists, so the scripts take their "systemd is running" branch and we can assert what they
#    ask systemd to do (start on install, restart and never stop on upgrade, stop on remove),
#    without any daemon being started;
#  - the overlay's upper directory is exactly what the packages left behind, which is checked
#    against what policy allows after purge and erase.
# The host's own ruleset (iptables/ip6tables, legacy and nft) is saved before and after and the
# test fails if it changed.
#
# Needs root (namespaces, overlayfs). Installs lintian, rpm, rpmlint, man-db, dpkg-dev, systemd,
# iptables and ipset with apt-get when missing. Usage: scripts/test-packages.sh     (exit 0 all passed, 1 a check failed, 2 error)
set -euo pipefail
cd "$(dirname "$0")/.."
# Sorting and tool messages must not depend on the caller's locale.
export LC_ALL=C

EXPECTED=packaging/tests
UNIT=hostfw.service

say() { printf '%s\n' "$*" >&2; }
die() { say "test-packages: error: $*"; exit 2; }

failures=0
pass() { say "  ok: $*"; }
fail() { say "  FAIL: $*"; failures=$((failures + 1)); }
# expect DESCRIPTION COMMAND...: passes when the command succeeds; shows its output otherwise.
expect() {
    local desc=$1 out
    shift
    if out=$("$@" 2>&1); then pass "$desc"; else fail "$desc"; printf '%s\n' "$out" | sed 's/^/    | /' >&2; fi
}
# expect_same DESCRIPTION EXPECTED_FILE ACTUAL_FILE: exact comparison with a readable diff.
expect_same() {
    if diff -u "$2" "$3" >"$WORK/diff" 2>&1; then pass "$1"; else fail "$1"; sed 's/^/    | /' "$WORK/diff" >&2; fi
}

# ---------------------------------------------------------------------------------------------
# Host side

ensure_tools() {
    local missing=() p
    # dpkg-dev: dpkg-shlibdeps for the .deb's libc dependency; systemd: systemctl and
    # systemd-analyze inside the throwaway root.
    for p in lintian rpm rpmlint man-db dpkg-dev systemd iptables ipset; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    command -v apt-get >/dev/null || die "missing: ${missing[*]} (and no apt-get)"
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The host's ruleset, without packet counters (they move with traffic) and save-time comments.
host_firewall() {
    local tool
    for tool in iptables-legacy-save ip6tables-legacy-save iptables-nft-save ip6tables-nft-save; do
        echo "### $tool"
        if command -v "$tool" >/dev/null; then
            "$tool" 2>&1 | sed -e '/^#/d' -e 's/\[[0-9]*:[0-9]*\]//'
        fi
    done
}

# "MODE /path" per entry (directories too), sorted; symlinks as "MODE /path -> target".
deb_listing() {
    dpkg-deb --fsys-tarfile "$1" | tar -tvf - |
        awk '{ path = $6; for (i = 7; i <= NF; i++) path = path " " $i; print $1, path }' |
        sed -e 's| \./| /|' -e 's|/$||' | grep -v ' $' | sort -k2
}

rpm_listing() {
    rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$1" | sort -k2
}

static_checks() {
    local deb=$1 rpm=$2 script tag
    say "== lintian"
    local lintian_out
    # --fail-on error,warning: warnings are fixed or overridden with a reason
    # (packaging/deb/lintian-overrides); info tags are shown, not failed on.
    if lintian_out=$(lintian --fail-on error,warning --display-info "$deb" 2>&1); then
        pass "lintian: no errors or warnings"
    else
        fail "lintian"
    fi
    printf '%s\n' "$lintian_out" | grep -v 'running with root privileges' | sed 's/^/    | /' >&2 || true

    say "== rpmlint"
    local rpmlint_out
    if rpmlint_out=$(rpmlint -c packaging/rpm/rpmlint.toml "$rpm" 2>&1); then
        pass "rpmlint: no errors"
    else
        fail "rpmlint"
    fi
    printf '%s\n' "$rpmlint_out" | sed 's/^/    | /' >&2

    say "== contents"
    deb_listing "$deb" >"$WORK/deb.files"
    expect_same "deb file list matches $EXPECTED/deb.files" "$EXPECTED/deb.files" "$WORK/deb.files"
    dpkg-deb -I "$deb" conffiles >"$WORK/deb.conffiles"
    expect_same "deb conffiles match $EXPECTED/deb.conffiles" "$EXPECTED/deb.conffiles" "$WORK/deb.conffiles"
    for script in postinst prerm postrm; do
        dpkg-deb -I "$deb" "$script" >"$WORK/deb.$script"
        expect_same "deb $script is packaging/deb/maintainer-scripts/$script" \
            "packaging/deb/maintainer-scripts/$script" "$WORK/deb.$script"
    done
    dpkg-deb -f "$deb" Depends >"$WORK/deb.depends"
    expect "deb depends on iptables" grep -Eq '(^|, )iptables(,|$| )' "$WORK/deb.depends"
    expect "deb depends on ipset" grep -Eq '(^|, )ipset(,|$| )' "$WORK/deb.depends"

    rpm_listing "$rpm" >"$WORK/rpm.files"
    expect_same "rpm file list matches $EXPECTED/rpm.files" "$EXPECTED/rpm.files" "$WORK/rpm.files"
    rpm -qp --configfiles "$rpm" >"$WORK/rpm.configfiles"
    expect_same "rpm config files match $EXPECTED/rpm.configfiles" "$EXPECTED/rpm.configfiles" "$WORK/rpm.configfiles"
    rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" | sort -k2 >"$WORK/rpm.fileflags"
    expect_same "rpm file flags (c config, n noreplace, d doc) match $EXPECTED/rpm.fileflags" \
        "$EXPECTED/rpm.fileflags" "$WORK/rpm.fileflags"
    for script in post:POSTIN preun:PREUN postun:POSTUN; do
        tag=${script#*:}
        rpm -qp --qf "%{$tag}" "$rpm" >"$WORK/rpm.${script%:*}"
        expect_same "rpm %${script%:*} is packaging/rpm/${script%:*}.sh" \
            "packaging/rpm/${script%:*}.sh" "$WORK/rpm.${script%:*}"
        expect "rpm %${script%:*} runs under /bin/sh" \
            test "$(rpm -qp --qf "[%{${tag}PROG}]" "$rpm")" = /bin/sh
    done
    expect "rpm has no pre-install scriptlet" test "$(rpm -qp --qf '%{PREIN}' "$rpm")" = "(none)"
    rpm -qp --requires "$rpm" >"$WORK/rpm.requires"
    expect "rpm requires iptables" grep -qx 'iptables' "$WORK/rpm.requires"
    expect "rpm requires ipset" grep -qx 'ipset' "$WORK/rpm.requires"
}

# ---------------------------------------------------------------------------------------------
# Sandbox side (runs as `test-packages.sh __sandbox deb|rpm ...` under unshare)

sandbox_setup() {
    SB=$1
    mkdir -p "$SB"
    mount --make-rprivate /
    mount -t tmpfs -o mode=0755 hostfw-pkgtest "$SB"
    mkdir "$SB/upper" "$SB/work" "$SB/root"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$SB/upper,workdir=$SB/work" "$SB/root"
    R=$SB/root
    mount -t proc proc "$R/proc"
    mount --rbind /dev "$R/dev"
    mount -t tmpfs tmpfs "$R/run"
    mount -t tmpfs tmpfs "$R/tmp"
    ip link set lo up
    # The recording systemctl, and "systemd is running" for the scripts' guards.
    cp "$R/usr/bin/systemctl" "$R/usr/sbin/systemctl.real"
    cp "$EXPECTED/systemctl-stub" "$R/usr/bin/systemctl"
    mkdir -p "$R/run/systemd/system"
    # Container hosts install a policy-rc.d that forbids starting services; the scripts must be
    # tested as a normal host runs them.
    rm -f "$R/usr/sbin/policy-rc.d"
    mkdir "$R/tmp/pkg"
}

in_root() { chroot "$R" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }

# The shipped policy directory holds no resource: `check` refuses it as an empty set (exit 1)
# and points at `hostfw flush`, the one way to remove protection on purpose.
empty_set_refused() {
    local out rc=0
    out=$(in_root hostfw check /etc/hostfw/policies.d 2>&1) || rc=$?
    [ "$rc" = 1 ] && printf '%s\n' "$out" | grep -q 'hostfw flush'
}

# The runtime actions asked of systemd since the last call (start/stop/restart...), then forget.
systemd_actions() {
    local calls=$R/run/systemctl-stub/calls
    if [ -f "$calls" ]; then
        grep -E '^(start|stop|restart|try-restart|restarted) ' "$calls" | tr '\n' ';' || true
        : >"$calls"
    fi
}

expect_actions() { # DESCRIPTION EXPECTED
    local got
    got=$(systemd_actions)
    if [ "$got" = "$2" ]; then pass "$1: $2"; else fail "$1: expected '$2', got '$got'"; fi
}

# hostfw state for the removal to flush: a HostEndpoint for this sandbox's node name, applied
# with the packaged binary into the sandbox's network namespace.
plant_rules() {
    local dir=$R/etc/hostfw/policies.d
    cat >"$dir/50-pkgtest.yaml" <<'EOF'
# Written by scripts/test-packages.sh: an admin's policy file, which purge must keep.
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: pkgtest-eth0
  labels:
    role: pkgtest
spec:
  node: pkgtest-node
  interfaceName: pkgtest0
  expectedIPs: ["198.51.100.10"]
EOF
    expect "hostfw check accepts the admin's policy" in_root hostfw check /etc/hostfw/policies.d
    expect "hostfw apply programs the sandbox's kernel" in_root hostfw --node pkgtest-node apply
    expect "hostfw chains exist before removal" sandbox_has_rules
    # What a stopped daemon leaves behind: removal must not keep it describing a daemon.
    mkdir -p "$R/run/hostfw"
    echo '{"state": "ok"}' >"$R/run/hostfw/status.json"
}

# (Output is captured before grepping: with pipefail, `save | grep -q` fails when grep stops
# reading early.)
sandbox_has_rules() {
    local tool saved
    for tool in iptables-legacy-save iptables-nft-save ip6tables-legacy-save ip6tables-nft-save; do
        saved=$(in_root "$tool" 2>/dev/null) || true
        grep -q -- '^-A cali-\|^:cali-' <<<"$saved" && return 0
    done
    return 1
}

sandbox_has_no_rules() {
    local sets
    if sandbox_has_rules; then return 1; fi
    sets=$(in_root ipset list -n 2>/dev/null) || true
    ! grep -q '^cali' <<<"$sets"
}

# What the packages left in the root: every entry of the overlay's upper directory that is a
# file, a symlink, a deletion of a host file, or a directory the host does not have — minus the
# package managers' own bookkeeping and the test's stub ($1: extended regex of allowed paths).
leftovers() {
    local allowed=$1 rel
    (cd "$SB/upper" && find . -mindepth 1 | sed 's|^\.||' | sort) | while read -r rel; do
        if [[ "$rel" =~ $allowed ]]; then continue; fi
        if [ -d "$SB/upper$rel" ] && [ ! -L "$SB/upper$rel" ] && [ -d "$rel" ]; then continue; fi
        echo "$rel"
    done
}

# Paths any lifecycle may leave: package manager databases and logs, caches, the stub.
COMMON_ALLOWED='^/(var/log|var/cache)(/|$)|^/usr/(bin/systemctl|sbin/systemctl\.real|sbin/policy-rc\.d)$|^/(tmp|run|proc|dev)$'

deb_lifecycle() {
    local deb=$1 deb2=$2 version=$3
    say "== deb lifecycle (throwaway root, private network namespace)"
    cp "$deb" "$deb2" "$R/tmp/pkg/"
    deb=/tmp/pkg/$(basename "$deb")
    deb2=/tmp/pkg/$(basename "$deb2")

    expect "dpkg -i" in_root dpkg -i "$deb"
    expect_actions "install starts the service" "start $UNIT;"
    expect "install enables the unit (sysinit.target.wants)" \
        test "$(readlink "$R/etc/systemd/system/sysinit.target.wants/$UNIT")" = "/lib/systemd/system/$UNIT"
    expect "hostfw --version" test "$(in_root hostfw --version)" = "hostfw $version"
    expect "hostfw check refuses the empty /etc/hostfw/policies.d as an empty set" empty_set_refused
    local example
    for example in "$R"/usr/share/doc/hostfw/examples/*.yaml; do
        expect "example ${example##*/} is valid" in_root hostfw check "${example#"$R"}"
    done
    expect "systemd-analyze verify the installed unit" verify_unit "/lib/systemd/system/$UNIT"
    expect "man -l renders hostfw(8) without warnings" render_man
    expect "bash completion loads" in_root bash -c \
        'source /usr/share/bash-completion/completions/hostfw && complete -p hostfw'

    say "-- upgrade keeps an edited conffile and restarts without a stop"
    echo 'HOSTFW_LOG_LEVEL=debug' >>"$R/etc/default/hostfw"
    mkdir -p "$R/var/lib/hostfw/last-good"
    echo '# state written by the daemon' >"$R/var/lib/hostfw/last-good/00-state.yaml"
    plant_rules
    systemd_actions >/dev/null
    expect "dpkg -i (upgrade to ${version}-2)" in_root dpkg -i "$deb2"
    expect_actions "upgrade restarts, never stops" "restart $UNIT;"
    expect "upgrade keeps the admin's /etc/default/hostfw" grep -qx 'HOSTFW_LOG_LEVEL=debug' "$R/etc/default/hostfw"
    expect "upgrade leaves the rules in place" sandbox_has_rules
    # ${Version} is dpkg-query's field syntax, not the shell's.
    # shellcheck disable=SC2016
    expect "upgraded version is installed" \
        test "$(in_root dpkg-query -W -f='${Version}' hostfw)" = "${version}-2"

    say "-- remove"
    expect "dpkg -r" in_root dpkg -r hostfw
    expect_actions "remove stops the service" "stop $UNIT;"
    expect "remove flushed hostfw's chains and ipsets (prerm)" sandbox_has_no_rules
    expect "remove deletes the binary" test ! -e "$R/usr/sbin/hostfw"
    expect "remove keeps conffiles" test -f "$R/etc/default/hostfw"
    expect "remove keeps /var/lib/hostfw" test -d "$R/var/lib/hostfw"
    expect "remove deletes the stale /run/hostfw/status.json" test ! -e "$R/run/hostfw/status.json"

    say "-- purge"
    expect "dpkg -P" in_root dpkg -P hostfw
    expect "purge deletes /var/lib/hostfw" test ! -e "$R/var/lib/hostfw"
    expect "purge deletes /etc/default/hostfw" test ! -e "$R/etc/default/hostfw"
    expect "purge keeps the admin's policy file" test -f "$R/etc/hostfw/policies.d/50-pkgtest.yaml"
    expect "dpkg forgot the package" sh -c "! chroot '$R' dpkg-query -W hostfw >/dev/null 2>&1"

    say "-- without a running systemd (chroot, container image build, this CI host)"
    rmdir "$R/run/systemd/system"
    expect "dpkg -i" in_root dpkg -i "$deb"
    expect_actions "install starts nothing" ""
    expect "install still enables the unit for the next boot" \
        test -L "$R/etc/systemd/system/sysinit.target.wants/$UNIT"
    expect "dpkg -P" in_root dpkg -P hostfw
    expect_actions "purge stops nothing" ""
    leftovers "$COMMON_ALLOWED|^/var/lib/dpkg(/|$)|^/etc/hostfw(/policies\.d(/50-pkgtest\.yaml)?)?$" >"$WORK/deb.leftovers"
    expect_same "purge leaves nothing but the admin's policy file and dpkg's records" /dev/null "$WORK/deb.leftovers"
}

rpm_lifecycle() {
    local rpm=$1 rpm2=$2 version=$3
    say "== rpm lifecycle (rpm --root, throwaway root, private network namespace)"
    # (Debian's rpm warns "use Alien instead" and proceeds; its database is /root/.rpmdb.)
    local rpm_cmd=(rpm --root "$R" --nodeps)

    expect "rpm -i" "${rpm_cmd[@]}" -i "$rpm"
    expect_actions "install starts the service (preset enables it)" "start $UNIT;"
    expect "install enables the unit (sysinit.target.wants)" \
        test -L "$R/etc/systemd/system/sysinit.target.wants/$UNIT"
    rpm --root "$R" -ql hostfw | sort >"$WORK/rpm.installed"
    awk '{print $2}' "$EXPECTED/rpm.files" | sort >"$WORK/rpm.expected-paths"
    expect_same "installed file list" "$WORK/rpm.expected-paths" "$WORK/rpm.installed"
    expect "rpm -V (installed files match the package)" rpm --root "$R" -V --nodeps hostfw
    expect "hostfw --version" test "$(in_root hostfw --version)" = "hostfw $version"
    expect "hostfw check refuses the empty /etc/hostfw/policies.d as an empty set" empty_set_refused
    expect "systemd-analyze verify the installed unit" verify_unit "/usr/lib/systemd/system/$UNIT"

    say "-- upgrade keeps an edited config file and restarts without a stop"
    echo 'HOSTFW_LOG_LEVEL=debug' >>"$R/etc/sysconfig/hostfw"
    mkdir -p "$R/var/lib/hostfw/last-good"
    echo '# state written by the daemon' >"$R/var/lib/hostfw/last-good/00-state.yaml"
    plant_rules
    systemd_actions >/dev/null
    expect "rpm -U (upgrade to release 2)" "${rpm_cmd[@]}" -U "$rpm2"
    expect_actions "upgrade restarts the running service, never stops it" \
        "try-restart $UNIT;restarted $UNIT;"
    expect "upgrade keeps the admin's /etc/sysconfig/hostfw" grep -qx 'HOSTFW_LOG_LEVEL=debug' "$R/etc/sysconfig/hostfw"
    expect "upgrade leaves the rules in place" sandbox_has_rules
    expect "upgraded release is installed" test "$(rpm --root "$R" -q --qf '%{RELEASE}' hostfw)" = 2

    say "-- erase"
    expect "rpm -e" "${rpm_cmd[@]}" -e hostfw
    expect_actions "erase stops the service" "stop $UNIT;"
    expect "erase disables the unit" test ! -e "$R/etc/systemd/system/sysinit.target.wants/$UNIT"
    expect "erase flushed hostfw's chains and ipsets (%preun)" sandbox_has_no_rules
    expect "erase deletes the stale /run/hostfw/status.json" test ! -e "$R/run/hostfw/status.json"
    expect "erase saves the edited config as .rpmsave" grep -qx 'HOSTFW_LOG_LEVEL=debug' "$R/etc/sysconfig/hostfw.rpmsave"
    # Besides rpm's database: parent directories the package does not own (on Fedora and RHEL
    # the filesystem, zsh and fish packages own them; this Debian host lacks them).
    leftovers "$COMMON_ALLOWED|^/root/\.rpmdb(/|$)|^/var/lib/rpm(/|$)|^/usr/share/(licenses|fish|fish/vendor_completions\.d|zsh/site-functions)$|^/etc/sysconfig(/hostfw\.rpmsave)?$|^/var/lib/hostfw(/last-good(/00-state\.yaml)?)?$|^/etc/hostfw(/policies\.d(/50-pkgtest\.yaml)?)?$|^/etc/systemd/system/sysinit\.target\.wants$" \
        >"$WORK/rpm.leftovers"
    expect_same "erase leaves only the .rpmsave, the state directory and the admin's policy" \
        /dev/null "$WORK/rpm.leftovers"
}

verify_unit() {
    local out
    # systemd-analyze exits 0 on warnings too, so any output is a finding.
    out=$(in_root systemd-analyze verify "$1" 2>&1) || { printf '%s\n' "$out"; return 1; }
    [ -z "$out" ] || { printf '%s\n' "$out"; return 1; }
}

render_man() {
    local out warnings
    out=$(in_root env MANWIDTH=80 man -l /usr/share/man/man8/hostfw.8.gz 2>&1) || return 1
    grep -q 'hostfw check' <<<"$out" || { echo "rendered page lacks 'hostfw check'"; return 1; }
    warnings=$(in_root man --warnings -E UTF-8 -l -Tutf8 -Z /usr/share/man/man8/hostfw.8.gz 2>&1 >/dev/null)
    [ -z "$warnings" ] || { printf '%s\n' "$warnings"; return 1; }
}

sandbox_main() { # kind work package package2 version
    local kind=$1
    WORK=$2
    sandbox_setup "$WORK/sandbox-$kind"
    "${kind}_lifecycle" "$3" "$4" "$5"
    [ "$failures" -eq 0 ] || exit 1
}

# ---------------------------------------------------------------------------------------------

main() {
    [ "$(id -u)" = 0 ] || die "needs root (network and mount namespaces, overlayfs)"
    export PATH="$HOME/.cargo/bin:$PATH"
    ensure_tools
    WORK=$(mktemp -d /tmp/hostfw-pkgtest.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
    host_firewall >"$WORK/firewall.before"

    local start=$SECONDS built deb rpm version arch
    say "== build (scripts/package.sh)"
    built=$(scripts/package.sh) || die "scripts/package.sh failed"
    deb=$(sed -n '1p' <<<"$built")
    rpm=$(sed -n '2p' <<<"$built")
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
    arch=$(dpkg --print-architecture)
    say "built $deb and $rpm in $((SECONDS - start)) s"

    # Second builds of the same binary with the next revision/release, to upgrade to.
    local deb2 rpm2
    deb2="$WORK/hostfw_${version}-2_${arch}.deb"
    rpm2="$WORK/hostfw-${version}-2.$(uname -m).rpm"
    cargo deb --no-build --locked --deb-version "${version}-2" --output "$deb2" >/dev/null
    cargo generate-rpm --auto-req builtin --set-metadata 'release = "2"' --output "$rpm2" >/dev/null

    static_checks "$deb" "$rpm"

    local kind status=0
    for kind in deb rpm; do
        local a=$deb b=$deb2
        [ "$kind" = rpm ] && { a=$rpm; b=$rpm2; }
        unshare --mount --net --fork -- "$0" __sandbox "$kind" "$WORK" "$(realpath "$a")" "$(realpath "$b")" "$version" ||
            { status=$?; fail "$kind lifecycle (see above)"; }
    done

    say "== host firewall"
    host_firewall >"$WORK/firewall.after"
    expect_same "the host's iptables/ip6tables rules (legacy and nft) are unchanged" \
        "$WORK/firewall.before" "$WORK/firewall.after"

    say "package tests took $((SECONDS - start)) s"
    if [ "$failures" -ne 0 ]; then
        say "test-packages: $failures check(s) failed"
        exit 1
    fi
    say "test-packages: all checks passed"
    [ "$status" -eq 0 ] || exit 1
}

if [ "${1:-}" = __sandbox ]; then
    shift
    sandbox_main "$@"
else
    main "$@"
fi
