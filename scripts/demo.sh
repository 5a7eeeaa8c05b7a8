#!/usr/bin/env bash
# hostfw demo: two network namespaces joined by a veth pair, the example policies of
# etc/hostfw/demo/ applied to the "host" namespace, listeners there, and probes from the "peer"
# namespace showing which connections pass, which are dropped, and which rule decided.
# Run as root (`sudo make demo`). The host's own namespace, firewall and interfaces are never
# touched; everything is removed on exit, also on Ctrl-C or failure.
#
# Usage: scripts/demo.sh [PATH-TO-HOSTFW]   (default: build target/release/hostfw)
# Environment: HOSTFW_IPTABLES_BACKEND=legacy|nft to choose the backend (default: detect).

set -euo pipefail

HOST_NS=hostfw-demo-host
PEER_NS=hostfw-demo-peer
HOST4=198.51.100.1 PEER4=198.51.100.2
HOST6=2001:db8::1 PEER6=2001:db8::2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
POLICIES=$ROOT/etc/hostfw/demo
PORTS=(2222 8080 9090)

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (sudo make demo): it creates network namespaces"

# --- what the demo needs ------------------------------------------------------------------
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v ipset >/dev/null || need+=(ipset)
command -v python3 >/dev/null || need+=(python3)
command -v ping >/dev/null || need+=(iputils-ping)
if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing: ${need[*]} (install them and rerun)"
    echo "installing: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

BIN=${1:-}
if [ -z "$BIN" ]; then
    command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs)"
    (cd "$ROOT" && cargo build --release --quiet)
    BIN=$ROOT/target/release/hostfw
fi
[ -x "$BIN" ] || die "no hostfw binary at $BIN"

# --- namespaces ---------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/hostfw-demo.XXXXXX)
echo "demo: work directory $WORK"
LISTENER=
DAEMON=
cleanup() {
    set +e
    for pid in "$DAEMON" "$LISTENER"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    for ns in "$HOST_NS" "$PEER_NS"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ns in "$HOST_NS" "$PEER_NS"; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$HOST_NS" link add veth-host type veth peer name veth-peer netns "$PEER_NS"
ip -n "$HOST_NS" addr add "$HOST4/24" dev veth-host
ip -n "$HOST_NS" addr add "$HOST6/64" dev veth-host nodad
ip -n "$PEER_NS" addr add "$PEER4/24" dev veth-peer
ip -n "$PEER_NS" addr add "$PEER6/64" dev veth-peer nodad
ip -n "$HOST_NS" link set veth-host up
ip -n "$PEER_NS" link set veth-peer up

in_host() { ip netns exec "$HOST_NS" "$@"; }
in_peer() { ip netns exec "$PEER_NS" "$@"; }
# The daemon watches a copy, so the demo can edit it live.
POLDIR=$WORK/policies.d
mkdir -p "$POLDIR"
cp "$POLICIES"/*.yaml "$POLDIR"/
hostfw() {
    in_host "$BIN" --policy-dir "$POLDIR" --node hostfw-demo \
        --run-dir "$WORK/run" --state-dir "$WORK/state" "$@"
}

# One dual-stack TCP listener per port, answering "ok". Started with `ip netns exec` itself,
# not through the in_host function: a backgrounded function is a subshell, so `$!` would be the
# subshell and killing it would orphan the real process. `ip netns exec` execs its command, so
# `$!` is the listener.
ip netns exec "$HOST_NS" python3 "$ROOT/scripts/ok-listener.py" "${PORTS[@]}" &
LISTENER=$!
sleep 0.5

# --- probes -------------------------------------------------------------------------------
# Our rules with their packet counters (policy, endpoint and failsafe chains), one per line.
counted() {
    local tool=$1
    in_host "$tool" -t filter -c 2>/dev/null \
        | grep -E '^\[[0-9]+:[0-9]+\] -A cali-(pi|po|fh|th|failsafe)' || true
}

# Which of our rules counted the probe's packets: the "why" of a verdict. Policy rules mark
# (allow: accept bit, deny: drop bit) and the endpoint chain drops what no policy passed.
why() {
    local before=$1 after=$2
    diff <(echo "$before") <(echo "$after") | sed -n 's/^> \[[0-9:]*\] //p' \
        | grep -E -- '^-A cali-(pi|po|failsafe)|Drop if no policies' \
        | grep -vE -- '--ctstate|-j cali-|-j RETURN' \
        | sed -E 's/-m comment --comment "?cali:[A-Za-z0-9_-]+"? //' | head -n 2 || true
}

probe() { # label family command...
    local label=$1 v6=$2; shift 2
    local tool=iptables-save; [ "$v6" = 1 ] && tool=ip6tables-save
    local before after verdict
    before=$(counted "$tool")
    if "$@" >/dev/null 2>&1; then verdict="PASS   "; else verdict="DROPPED"; fi
    after=$(counted "$tool")
    printf '  %-40s %s\n' "$label" "$verdict"
    why "$before" "$after" | sed 's/^/        matched: /'
}

tcp() { in_peer timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2 && head -c 2 <&3 | grep -q ok"; }
pings() { in_peer ping -c 1 -W 1 "$1"; }

show_probes() {
    for port in "${PORTS[@]}"; do
        probe "peer $PEER4 -> $HOST4 tcp/$port" 0 tcp "$HOST4" "$port"
    done
    probe "peer $PEER4 -> $HOST4 icmp echo" 0 pings "$HOST4"
    for port in "${PORTS[@]}"; do
        probe "peer $PEER6 -> $HOST6 tcp/$port" 1 tcp "$HOST6" "$port"
    done
    probe "peer $PEER6 -> $HOST6 icmpv6 echo" 1 pings "$HOST6"
}

bold "Before hostfw: nothing is filtered"
show_probes

bold "The policies (etc/hostfw/demo) as this node sees them: hostfw show"
hostfw show

bold "What apply will do: hostfw diff"
hostfw diff || true

bold "hostfw apply: the lockout guard refuses (nothing allows SSH, failsafe ports are off)"
rc=0
hostfw apply || rc=$?
[ "$rc" = 1 ] || die "apply should have been refused by the lockout guard (exit $rc)"
echo "  (exit 1: refused, nothing written; \`hostfw apply --force\` would insist)"

# until CMD succeeds, at most ~10 s.
until_ok() {
    local i
    for i in $(seq 1 50); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}

bold "hostfw run: the daemon applies the directory and keeps it in force (it only warns about SSH)"
# As the listener: the real binary in the background, so `$!` is the daemon's own pid.
ip netns exec "$HOST_NS" "$BIN" --policy-dir "$POLDIR" --node hostfw-demo \
    --run-dir "$WORK/run" --state-dir "$WORK/state" run >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
until_ok hostfw diff || { cat "$WORK/daemon.log"; die "the daemon did not converge"; }
sed 's/^/  daemon: /' "$WORK/daemon.log"
hostfw status

bold "Protected: 2222 only from $PEER4, 8080 open, 9090 denied, ping allowed"
show_probes

bold "Live edit: a policy opening 9090 is dropped into the directory; the daemon applies it"
cat >"$POLDIR/40-open-9090.yaml" <<'YAML'
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: open-9090
spec:
  order: 10
  selector: role == 'demo'
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [9090]
YAML
until_ok tcp "$HOST4" 9090 || die "the edit did not reach the kernel"
probe "peer $PEER4 -> $HOST4 tcp/9090" 0 tcp "$HOST4" 9090
probe "peer $PEER6 -> $HOST6 tcp/9090" 1 tcp "$HOST6" 9090

bold "A broken edit: reported with file, line and field; the rules in force stay"
printf 'apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: broken\nspec:\n  ingress:\n  - action: allow\n' >"$POLDIR/50-broken.yaml"
until_ok grep -q broken "$WORK/run/status.json" || true
hostfw check || true
probe "peer $PEER4 -> $HOST4 tcp/9090" 0 tcp "$HOST4" 9090
rm -f "$POLDIR/50-broken.yaml"

bold "SIGTERM: the daemon exits, the rules stay in the kernel (fail closed)"
kill -TERM "$DAEMON"
rc=0
wait "$DAEMON" || rc=$?
# wait returns once the process is gone; kill -0 proves no process of that pid remains.
! kill -0 "$DAEMON" 2>/dev/null || die "the daemon (pid $DAEMON) is still running after SIGTERM"
[ "$rc" = 0 ] || { cat "$WORK/daemon.log"; die "the daemon exited with status $rc on SIGTERM"; }
# diff exits 0 only when the kernel holds exactly the rules the directory describes.
hostfw diff >/dev/null 2>&1 || die "the rules changed when the daemon exited"
# The marker tests/kernel/demo_script.rs looks for.
echo "  daemon pid $DAEMON exited with status 0; the kernel still holds every rule (hostfw diff: in sync)"
DAEMON=
probe "peer $PEER4 -> $HOST4 tcp/8080" 0 tcp "$HOST4" 8080
probe "peer $PEER6 -> $HOST6 tcp/2222" 1 tcp "$HOST6" 2222

bold "hostfw flush: our chains, hooks and sets are gone, the rest untouched"
hostfw flush
show_probes

echo
echo "demo done; namespaces removed."
