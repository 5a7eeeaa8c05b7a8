#!/usr/bin/env bash
# The built .deb under a real systemd: a throwaway Debian 12 root booted with `systemd-nspawn -b`
# (systemd 252 as PID 1), in a network namespace of our own joined by a veth to a peer namespace.
# Checks what a user would: install starts the unit and it reaches READY; `systemctl reload`
# applies an edit before it returns; traffic from the peer is allowed and denied as the policy
# says; the watchdog does not fire; stop leaves the rules; after a reboot (a fresh network
# namespace: no rules) hostfw has restored them before network-pre.target; without CAP_NET_ADMIN
# the unit fails once with status 4 and is not restarted; remove flushes; purge cleans.
#
# The root is debootstrapped from the Debian archive once and cached in target/systemd-root/
# (rebuilt when the package list below changes); every run boots an overlay of it whose writes
# go to a temporary directory. Nothing touches the host's own namespace, firewall or network:
# the container and the peer live in namespaces this script creates and deletes (no
# --network-veth, which would put an interface on the host), and `--register=no --keep-unit`
# needs no systemd on the host.
#
# Needs root; installs systemd-container, debootstrap and python3 with apt-get when missing. Without root
# or nspawn it skips (exit 0, loudly), except with CI=true, where it fails.
# Usage: scripts/test-systemd.sh [PATH-TO-DEB]   (default: build it with scripts/package.sh)
# Exit: 0 all passed (or skipped outside CI), 1 a check failed, 2 could not run.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

MACHINE=hostfw-sdtest
NS=hostfw-sdtest-host
PEER=hostfw-sdtest-peer
HOST4=198.51.100.1 PEER4=198.51.100.2
HOST6=2001:db8::1 PEER6=2001:db8::2
CACHE=target/systemd-root
PACKAGES=systemd,systemd-sysv,dbus,iptables,ipset,iproute2,procps,kmod,make
SUITE=bookworm
# The Debian archive this machine's apt already uses (deb822 or one-line sources): the root
# comes from the same place as the host's own packages.
# apt_mirror main|security
apt_mirror() {
    local uri pick=(grep -v -- -security)
    [ "$1" = security ] && pick=(grep -- -security)
    uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | "${pick[@]}" | head -n1)
    [ -n "$uri" ] || uri=$(awk '$1 == "deb" { print $2 }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | "${pick[@]}" | head -n1)
    printf '%s\n' "$uri"
}
MIRROR=$(apt_mirror main)
SECURITY_MIRROR=$(apt_mirror security)

say() { printf '%s\n' "$*" >&2; }
cannot_run() {
    if [ "${CI:-}" = true ]; then say "test-systemd: error: CI=true but cannot run: $*"; exit 2; fi
    say ""
    say "*** test-systemd skipped: $* ***"
    say ""
    exit 0
}
die() { say "test-systemd: error: $*"; exit 2; }

failures=0
pass() { say "  ok: $*"; }
fail() { say "  FAIL: $*"; failures=$((failures + 1)); }
expect() { # DESCRIPTION COMMAND...
    local desc=$1 out
    shift
    if out=$("$@" 2>&1); then pass "$desc"; else fail "$desc"; printf '%s\n' "$out" | sed 's/^/    | /' >&2; fi
}

[ "$(id -u)" = 0 ] || cannot_run "needs root (namespaces, mounts, systemd-nspawn)"
# The container tools, and python3 for the test listeners (run from the host in the container's
# network namespace).
need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || cannot_run "missing ${need[*]} and no apt-get"
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# The cached root and the package

root_cache() {
    local stamp="$CACHE/rootfs/.hostfw-test-root"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$SUITE $PACKAGES" ]; then return; fi
    say "== debootstrap $SUITE into $CACHE/rootfs (once; cached for later runs)"
    rm -rf "$CACHE/rootfs" "$CACHE/rootfs.tmp"
    mkdir -p "$CACHE"
    [ -n "$MIRROR" ] || cannot_run "no Debian archive in /etc/apt/sources.list(.d) to debootstrap from"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$CACHE/rootfs.tmp" "$MIRROR" \
        >"$CACHE/debootstrap.log" 2>&1 || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
    chroot "$CACHE/rootfs.tmp" apt-get clean
    echo "$SUITE $PACKAGES" >"$CACHE/rootfs.tmp/.hostfw-test-root"
    mv "$CACHE/rootfs.tmp" "$CACHE/rootfs"
}

DEB=${1:-}
if [ -z "$DEB" ]; then
    say "== build (scripts/package.sh)"
    DEB=$(scripts/package.sh | sed -n 1p) || die "scripts/package.sh failed"
fi
[ -f "$DEB" ] || die "no package at $DEB"
root_cache

# ---------------------------------------------------------------------------------------------
# The fresh-machine path: a Debian 12 root with no Rust (the security suite enabled, as a fresh
# install has it), `make deps` from this tree, then a toolchain at least Cargo.toml's
# rust-version with rustfmt and clippy. Not booted; the container shares the host's network for
# the Debian archive only, and the downloaded packages are cached in target/systemd-root/apt.

fresh_machine() {
    local fresh=$WORK/fresh need have
    mkdir -p "$fresh/root" "$fresh/upper" "$fresh/work" "$CACHE/apt"
    mount -t overlay overlay -o "lowerdir=$PWD/$CACHE/rootfs,upperdir=$fresh/upper,workdir=$fresh/work" "$fresh/root"
    MOUNTS+=("$fresh/root")
    [ -n "$SECURITY_MIRROR" ] || cannot_run "no Debian security archive in /etc/apt/sources.list(.d)"
    echo "deb $SECURITY_MIRROR $SUITE-security main" \
        >"$fresh/root/etc/apt/sources.list.d/security.list"
    mkdir -p "$fresh/root/src/scripts"
    cp Makefile Cargo.toml "$fresh/root/src/"
    cp scripts/toolchain.sh "$fresh/root/src/scripts/"
    in_fresh() {
        systemd-nspawn --quiet --directory="$fresh/root" --register=no --keep-unit \
            --bind="$PWD/$CACHE/apt:/var/cache/apt/archives" --chdir=/src -- "$@"
    }
    need=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
    expect "the fresh root has no cargo or rustc" not in_fresh sh -c 'command -v cargo || command -v rustc'
    expect "make deps" in_fresh make deps
    have=$(in_fresh rustc --version | sed -n 's/^rustc \([0-9.]*\).*/\1/p') || true
    expect "rustc ${have:-none} >= rust-version $need" \
        test "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" = "$need"
    expect "cargo fmt is there" in_fresh cargo fmt --version
    expect "cargo clippy is there" in_fresh cargo clippy --version
    umount "$fresh/root"
    unset 'MOUNTS[-1]'
}

# ---------------------------------------------------------------------------------------------
# One throwaway boot

WORK=$(mktemp -d /tmp/hostfw-sdtest.XXXXXX)
ROOT=$WORK/root
NSPAWN=
LEADER=
MOUNTS=()
cleanup() {
    set +e
    stop_container
    for m in "${MOUNTS[@]}" "$ROOT"; do umount "$m" 2>/dev/null; done
    ip netns del "$NS" 2>/dev/null
    ip netns del "$PEER" 2>/dev/null
    # Never remove through a root that is still mounted.
    for m in "${MOUNTS[@]}" "$ROOT"; do
        if mountpoint -q "$m"; then say "test-systemd: $m still mounted; leaving $WORK"; return; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$ROOT" "$WORK/upper" "$WORK/overlay-work"
mount -t overlay overlay -o "lowerdir=$PWD/$CACHE/rootfs,upperdir=$WORK/upper,workdir=$WORK/overlay-work" "$ROOT"
cp "$DEB" "$ROOT/root/hostfw.deb"
# The node name hostfw uses (the kernel hostname) and the HostEndpoint names; debootstrap copied
# the host's /etc/hostname.
echo "$MACHINE" >"$ROOT/etc/hostname"

# A fresh network namespace for each boot (a reboot starts with an empty ruleset), the veth to
# the peer, addresses without duplicate address detection.
fresh_network() {
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$PEER" 2>/dev/null || true
    ip netns add "$NS"
    ip netns add "$PEER"
    ip -n "$PEER" link set lo up
    ip -n "$NS" link add eth0 type veth peer name eth0 netns "$PEER"
    ip -n "$NS" addr add "$HOST4/24" dev eth0
    ip -n "$NS" addr add "$HOST6/64" dev eth0 nodad
    ip -n "$PEER" addr add "$PEER4/24" dev eth0
    ip -n "$PEER" addr add "$PEER6/64" dev eth0 nodad
    ip -n "$NS" link set eth0 up
    ip -n "$PEER" link set eth0 up
}

# Boot the root (extra nspawn options in "$@") and wait until systemd has finished starting.
# nspawn grants CAP_NET_ADMIN only with --private-network, which --network-namespace-path is
# not: the boots that stand for a normal host pass --capability=CAP_NET_ADMIN.
boot() {
    fresh_network
    systemd-nspawn --quiet --directory="$ROOT" --machine="$MACHINE" --register=no --keep-unit \
        --network-namespace-path="/run/netns/$NS" "$@" --boot \
        >>"$WORK/console.log" 2>&1 </dev/null &
    NSPAWN=$!
    local i pid
    LEADER=
    for i in $(seq 1 100); do
        # The container's PID 1: nspawn's child in another PID namespace.
        for pid in $(pgrep -P "$NSPAWN" 2>/dev/null) $(pgrep -P "$(pgrep -P "$NSPAWN" 2>/dev/null | head -n1)" 2>/dev/null); do
            if [ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] &&
                [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ]; then
                LEADER=$pid
            fi
        done
        [ -n "$LEADER" ] && break
        kill -0 "$NSPAWN" 2>/dev/null || { cat "$WORK/console.log" >&2; die "systemd-nspawn exited"; }
        sleep 0.1
    done
    [ -n "$LEADER" ] || { cat "$WORK/console.log" >&2; die "no systemd in the container"; }
    # Until systemd answers and has finished starting (running, or degraded when a unit failed).
    local state=
    for i in $(seq 1 600); do
        state=$(in_ct systemctl is-system-running 2>/dev/null) || true
        case $state in running | degraded) break ;; esac
        kill -0 "$NSPAWN" 2>/dev/null || { cat "$WORK/console.log" >&2; die "systemd-nspawn exited"; }
        sleep 0.2
    done
    say "  container booted (systemd pid $LEADER on the host): ${state:-no answer}"
}

stop_container() {
    [ -n "$NSPAWN" ] || return 0
    # SIGTERM to nspawn powers the container off cleanly; wait for it (bounded).
    kill -TERM "$NSPAWN" 2>/dev/null || true
    local i
    for i in $(seq 1 300); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NSPAWN" 2>/dev/null || true
    wait "$NSPAWN" 2>/dev/null || true
    NSPAWN=
}

in_ct() { nsenter --target "$LEADER" --mount --uts --ipc --net --pid -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C "$@"; }
in_peer() { ip netns exec "$PEER" "$@"; }

# (Command output is captured before grepping it: with pipefail, `cmd | grep -q` fails when
# grep stops reading early.)

# TCP listeners in the container's network namespace, answering "ok" (started from the host:
# the namespace is the same; the container's own processes are not involved).
listen() {
    ip netns exec "$NS" python3 scripts/ok-listener.py 22 8080 9090 &
    LISTENER=$!
    local i
    for i in $(seq 1 100); do
        [ "$(ip netns exec "$NS" ss -Hltn '( sport = :22 or sport = :8080 or sport = :9090 )' | wc -l)" -ge 3 ] && return
        sleep 0.1
    done
    die "the listeners did not start"
}
tcp() { in_peer timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2 && head -c 2 <&3 | grep -q ok"; }
# Dropped: no answer at all until the timeout (124). A refused connection is not a denial.
denied() {
    local rc=0
    tcp "$@" || rc=$?
    [ "$rc" = 124 ] || { echo "tcp $1:$2 ended with $rc, not a timeout"; return 1; }
}
not() { ! "$@"; }
systemd_version_at_least() {
    local v
    v=$(in_ct systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')
    [ -n "$v" ] && [ "$v" -ge "$1" ] || { echo "systemd ${v:-?}"; return 1; }
}
has_rules() {
    local saved
    saved=$(in_ct iptables-save -t filter)
    grep -q -- '-A INPUT .*-j cali-INPUT' <<<"$saved" && return
    printf '%s\n' "$saved"
    in_ct journalctl -b -u hostfw.service --no-pager -o cat | tail -n 20
    return 1
}
has_no_rules() {
    local t saved
    for t in iptables-save ip6tables-save; do
        saved=$(in_ct "$t")
        if grep -- 'cali-' <<<"$saved"; then return 1; fi
    done
    saved=$(in_ct ipset list -n)
    ! grep '^cali' <<<"$saved"
}
prop() { in_ct systemctl show -P "$2" "$1"; }
is_prop() { [ "$(prop "$1" "$2")" = "$3" ] || { echo "$1 $2=$(prop "$1" "$2"), expected $3"; return 1; }; }

policy() { # PORTS: the container's eth0 may receive these TCP ports (plus the failsafe ones)
    cat <<EOF
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: $MACHINE-eth0, labels: {role: sdtest}}
spec: {node: $MACHINE, interfaceName: eth0}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: sdtest}
spec:
  selector: role == 'sdtest'
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [$1]}}
  - {action: Allow, protocol: ICMPv6, icmp: {type: 135}}
  - {action: Allow, protocol: ICMPv6, icmp: {type: 136}}
  egress:
  - action: Allow
EOF
}

# The reload returns only after the edit: each probe runs right after `systemctl reload`, with
# no waiting in between.
reload_with() { # PORTS
    policy "$1" >"$WORK/policy.yaml"
    cp "$WORK/policy.yaml" "$ROOT/etc/hostfw/policies.d/10-sdtest.yaml"
    in_ct systemctl reload hostfw.service
}

journal_has() {
    local log
    log=$(in_ct journalctl -b -u hostfw.service --no-pager -o cat)
    grep -q -- "$1" <<<"$log" || { printf '%s\n' "$log" | tail -n 20; return 1; }
}
before_network_pre() {
    local a b
    a=$(prop hostfw.service ActiveEnterTimestampMonotonic)
    b=$(prop network-pre.target ActiveEnterTimestampMonotonic)
    [ "$a" -gt 0 ] && [ "$b" -gt 0 ] && [ "$a" -le "$b" ] || { echo "hostfw active at $a, network-pre.target at $b"; return 1; }
}

start=$SECONDS
LISTENER=
say "== a fresh machine: make deps"
fresh_machine
say "  ($((SECONDS - start)) s)"

say "== boot 1: install"
boot --capability=CAP_NET_ADMIN
expect "container runs systemd 252+ as PID 1" systemd_version_at_least 252
expect "dpkg -i starts the unit" in_ct dpkg -i /root/hostfw.deb
expect "hostfw.service is active" in_ct systemctl is-active hostfw.service
expect "it reached READY (Type=notify: active means READY=1 arrived)" is_prop hostfw.service SubState running
expect "the daemon logged ready" journal_has "ready: "
listen
expect "no HostEndpoint yet: tcp/9090 open" tcp "$HOST4" 9090

say "-- reload applies an edit before it returns"
expect "systemctl reload (8080 allowed)" reload_with 8080
expect "right after: tcp/8080 allowed" tcp "$HOST4" 8080
expect "right after: tcp/9090 denied" denied "$HOST4" 9090
expect "tcp/22 (failsafe) allowed" tcp "$HOST4" 22
expect "IPv6 tcp/8080 allowed" tcp "$HOST6" 8080
expect "IPv6 tcp/9090 denied" denied "$HOST6" 9090
expect "systemctl reload (8080, 9090 allowed)" reload_with "8080, 9090"
expect "right after: tcp/9090 allowed" tcp "$HOST4" 9090
printf 'apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: broken}\nspec:\n  ingress:\n  - action: Alow\n' \
    >"$ROOT/etc/hostfw/policies.d/20-broken.yaml"
expect "systemctl reload fails on an invalid directory" not in_ct systemctl reload hostfw.service
expect "the unit stays active" in_ct systemctl is-active hostfw.service
expect "the rules in force stay: tcp/9090 allowed" tcp "$HOST4" 9090
rm -f "$ROOT/etc/hostfw/policies.d/20-broken.yaml"
expect "systemctl reload after the fix" reload_with 8080

say "-- watchdog, stop"
expect "watchdog armed (WatchdogUSec=2min)" is_prop hostfw.service WatchdogUSec 2min
expect "no restart so far (the watchdog did not fire)" is_prop hostfw.service NRestarts 0
expect "systemctl stop" in_ct systemctl stop hostfw.service
expect "stop leaves the rules: tcp/9090 still denied" denied "$HOST4" 9090
expect "stop leaves the rules: tcp/8080 allowed" tcp "$HOST4" 8080
expect "the hook is still in INPUT" has_rules
kill "$LISTENER" 2>/dev/null; wait "$LISTENER" 2>/dev/null || true
stop_container

say "== boot 2: a reboot (a fresh network namespace, so no rules until hostfw applies them)"
boot --capability=CAP_NET_ADMIN
expect "hostfw.service is active after boot" in_ct systemctl is-active hostfw.service
expect "it was active before network-pre.target" before_network_pre
expect "the rules are back" has_rules
listen
expect "tcp/8080 allowed" tcp "$HOST4" 8080
expect "tcp/9090 denied" denied "$HOST4" 9090
kill "$LISTENER" 2>/dev/null; wait "$LISTENER" 2>/dev/null || true
stop_container

say "== boot 3: without CAP_NET_ADMIN (an unprivileged container)"
boot
expect "hostfw.service failed" is_prop hostfw.service ActiveState failed
expect "with exit status 4" is_prop hostfw.service ExecMainStatus 4
expect "and was not restarted" is_prop hostfw.service NRestarts 0
expect "the log says why" journal_has "needs CAP_NET_ADMIN"
stop_container

say "== boot 4: remove, purge"
boot --capability=CAP_NET_ADMIN
expect "hostfw.service is active" in_ct systemctl is-active hostfw.service
expect "the rules are in place" has_rules
expect "dpkg -r" in_ct dpkg -r hostfw
expect "remove stopped the unit" not in_ct systemctl is-active -q hostfw.service
expect "remove flushed the rules and ipsets" has_no_rules
expect "remove deleted /run/hostfw" not in_ct test -e /run/hostfw
expect "dpkg -P" in_ct dpkg -P hostfw
expect "purge deleted /var/lib/hostfw" test ! -e "$ROOT/var/lib/hostfw"
expect "purge deleted /etc/default/hostfw" test ! -e "$ROOT/etc/default/hostfw"
expect "purge kept the admin's policy file" test -f "$ROOT/etc/hostfw/policies.d/10-sdtest.yaml"
expect "systemd forgot the unit" not in_ct systemctl cat hostfw.service
stop_container

say "systemd tests took $((SECONDS - start)) s"
if [ "$failures" -ne 0 ]; then
    say "test-systemd: $failures check(s) failed"
    say "--- container console (last 40 lines) ---"
    tail -n 40 "$WORK/console.log" >&2
    exit 1
fi
say "test-systemd: all checks passed"
