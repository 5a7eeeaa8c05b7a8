#!/usr/bin/env bash
# hostfw performance harness (docs/performance.md): every stage measured against the kernel's own floor,
# inside network namespaces this script creates (the host's namespace, firewall and interfaces
# are never touched; everything is removed on exit). Run as root: `make bench`.
#
# Usage: scripts/bench.sh [--quick] | --report FILE
#   --quick  S and M only, the nft backend only, fewer repetitions, 10 s idle window.
# Environment: BENCH_SCALES="S M L", BENCH_BACKENDS="legacy nft", BENCH_REPS=5 (each after one
#   warm-up; BENCH_REPS_L=1 for L, without one), BENCH_EDITS=20 (BENCH_EDITS_L=3),
#   BENCH_IDLE=60 override the defaults; BENCH_NOFLUSH_L=1 also times L's first-apply floor
#   with --noflush (minutes on nft); BENCH_OUT=FILE keeps the raw samples.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
[ "${1:-}" = --quick ] && QUICK=1
if [ $QUICK = 1 ]; then
    SCALES=${BENCH_SCALES:-S M} BACKENDS=${BENCH_BACKENDS:-nft} REPS=${BENCH_REPS:-3}
    EDITS=${BENCH_EDITS:-20} IDLE=${BENCH_IDLE:-10}
else
    SCALES=${BENCH_SCALES:-S M L} BACKENDS=${BENCH_BACKENDS:-legacy nft} REPS=${BENCH_REPS:-5}
    EDITS=${BENCH_EDITS:-20} IDLE=${BENCH_IDLE:-60}
fi

die() { echo "bench: $*" >&2; exit 2; }
# summary RESULTS SECONDS IDLE: the table (median, min, max per measurement, ratios) on stdout.
summary() {
python3 - "$1" "$2" "$3" <<'EOF'
import statistics, sys
from collections import defaultdict
data = defaultdict(list)
for line in open(sys.argv[1]):
    s, b, m, v = line.rstrip("\n").split("\t")
    data[(s, b, m)].append(float(v))
ms = lambda us: us / 1000
def row(label, vals, unit="ms", conv=ms):
    v = sorted(conv(x) for x in vals)
    print("| %-52s | %10.1f | %10.1f | %10.1f | %s |" % (label, statistics.median(v), v[0], v[-1], unit))
keys = sorted({(s, b) for s, b, _ in data}, key=lambda k: ("SML".index(k[0]), k[1]))
print("\n| %-52s | %10s | %10s | %10s | unit |" % ("measurement", "median", "min", "max"))
print("|" + "-" * 54 + "|" + ("-" * 12 + "|") * 3 + "------|")
for s, b in keys:
    d = lambda m: data.get((s, b, m), [])
    tag = "%s %s" % (s, b if b != "-" else "(in process)")
    if b == "-":
        row(tag + " load+validate+resolve", d("load_resolve"), conv=float)
        row(tag + " render (v4+v6)", d("render"), conv=float)
        print("| %-52s | %10d | %10s | %10s | rules |" % (tag + " rendered rules", d("rendered_rules")[0], "", ""))
        print("| %-52s | %10.0f | %10s | %10s | MB |" % (tag + " peak RSS (load..render)", d("rss_kb")[0] / 1024, "", ""))
        continue
    for m, label in [("apply_full", "first apply"), ("floor_full", "  floor: bare ipset+iptables-restore"),
                     ("floor_full_noflush", "  floor: the same with --noflush"),
                     ("apply_one_rule", "one-rule change"), ("floor_one_rule", "  floor: restore --noflush changed chains"),
                     ("floor_one_shot", "  floor: read + that restore + read written"),
                     ("apply_set_member", "one set member added"), ("apply_in_sync", "in-sync apply"),
                     ("floor_read", "  floor: one read (saves + ipset save)")]:
        if d(m):
            row("%s %s" % (tag, label), d(m))
    med = lambda m: statistics.median(d(m)) if d(m) else float("nan")
    if d("apply_failed"):
        print("| %-52s | %10s | %10s | %10s | |" % (tag + " first apply FAILED (see log)", "", "", ""))
    if d("apply_full"):
        print("| %-52s | %10.2f | %10s | %10s | x |" % (tag + " first apply / floor", med("apply_full") / med("floor_full"), "", ""))
        if d("floor_full_noflush"):
            print("| %-52s | %10.2f | %10s | %10s | x |" % (tag + " first apply / --noflush floor", med("apply_full") / med("floor_full_noflush"), "", ""))
        print("| %-52s | %10.2f | %10s | %10s | x |" % (tag + " one-rule change / floor", med("apply_one_rule") / med("floor_one_rule"), "", ""))
        if d("floor_one_shot"):
            print("| %-52s | %10.2f | %10s | %10s | x |" % (tag + " one-rule change / one-shot floor", med("apply_one_rule") / med("floor_one_shot"), "", ""))
        if d("floor_read"):
            print("| %-52s | %10.2f | %10s | %10s | x |" % (tag + " in-sync apply / one read", med("apply_in_sync") / med("floor_read"), "", ""))
        print("| %-52s | %10.1f | %10s | %10s | x |" % (tag + " first apply / one-rule change", med("apply_full") / med("apply_one_rule"), "", ""))
        print("| %-52s | %10d | %10s | %10s | count |" % (tag + " restores spawned when in sync", max(d("in_sync_restores") or [0]), "", ""))
    if d("latency_us"):
        v = sorted(ms(x) for x in d("latency_us"))
        p99 = v[min(len(v) - 1, int(round(0.99 * (len(v) - 1))))]
        print("| %-52s | %10.1f | %10.1f | %10.1f | ms (p50 min max) |" % (tag + " daemon reaction, %d edits" % len(v), statistics.median(v), v[0], v[-1]))
        print("| %-52s | %10.1f | %10s | %10s | ms |" % (tag + " daemon reaction p99", p99, "", ""))
        print("| %-52s | %10.0f | %10s | %10s | MB |" % (tag + " daemon peak RSS", d("daemon_rss_kb")[0] / 1024, "", ""))
        print("| %-52s | %10d | %10s | %10s | count |" % (tag + " daemon context switches while idle %d s" % (d("idle_window") or [float(sys.argv[3])])[0], d("idle_wakeups")[0], "", ""))
        if d("idle_wake_episodes"):
            print("| %-52s | %10d | %10s | %10s | count |" % (tag + " daemon wake-ups (syscall bursts) idle %d s" % d("idle_strace_window")[0], d("idle_wake_episodes")[0], "", ""))
    if d("conn_rate_with"):
        w, wo = statistics.median(d("conn_rate_with")), statistics.median(d("conn_rate_without"))
        print("| %-52s | %10.0f | %10.0f | %10.0f | conn/s |" % (tag + " TCP conn rate, large set in policy", w, min(d("conn_rate_with")), max(d("conn_rate_with"))))
        print("| %-52s | %10.0f | %10.0f | %10.0f | conn/s |" % (tag + " TCP conn rate, without it", wo, min(d("conn_rate_without")), max(d("conn_rate_without"))))
        print("| %-52s | %10.3f | %10s | %10s | x |" % (tag + " with / without", w / wo, "", ""))
if sys.argv[2] != "-":
    print("\ntotal time: %s s" % sys.argv[2])
EOF
}

# --report FILE: print the table of samples kept earlier with BENCH_OUT (several runs' files
# concatenated are fine).
if [ "${1:-}" = --report ]; then
    summary "${2:?--report FILE}" "-" "${BENCH_IDLE:-60}"
    exit 0
fi
[ "$(id -u)" = 0 ] || die "run as root: it creates network namespaces"
for c in ip ipset python3 iptables-legacy-restore iptables-nft-restore; do
    command -v $c >/dev/null || die "missing $c"
done

echo "building (release)..." >&2
(cd "$ROOT" && cargo build --release --quiet --bin hostfw)
PERF=$(cd "$ROOT" && cargo bench --bench perf --no-run --message-format=json 2>/dev/null |
    python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="perf" and m.get("executable"): print(m["executable"])' | tail -1)
BIN=$ROOT/target/release/hostfw
[ -x "$BIN" ] && [ -x "$PERF" ] || die "build failed"

WORK=$(mktemp -d /tmp/hostfw-bench.XXXXXX)
RESULTS=${BENCH_OUT:-$WORK/results.tsv}
: >"$RESULTS"
NSES=()
DAEMON=
LISTENER=
cleanup() {
    set +e
    [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
    [ -n "$LISTENER" ] && kill "$LISTENER" 2>/dev/null && wait "$LISTENER" 2>/dev/null
    for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    [ -z "${BENCH_OUT:-}" ] || cp "$RESULTS" "$BENCH_OUT" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SEQ=0
# mkns ENDPOINTS: a fresh namespace (name in NS) with lo and interfaces bench0...
mkns() {
    SEQ=$((SEQ + 1))
    local ns=hfw-perf-$$-$SEQ
    ip netns add "$ns"
    NSES+=("$ns")
    ip -n "$ns" link set lo up
    for ((i = 0; i < $1; i++)); do
        # veth, not dummy: the dummy module is not always available.
        ip -n "$ns" link add "bench$i" type veth peer name "bpeer$i"
        ip -n "$ns" link set "bench$i" up
    done
    NS=$ns
}
delns() { ip netns del "$1"; }

now_us() { echo $(($(date +%s%N) / 1000)); }
# record SCALE BACKEND METRIC VALUE
record() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# hf NS BACKEND DIR ARGS...: hostfw inside NS.
hf() {
    local ns=$1 be=$2 dir=$3
    shift 3
    ip netns exec "$ns" "$BIN" --policy-dir "$dir" --node bench --backend "$be" \
        --run-dir "$WORK/run-$ns" --state-dir "$WORK/state-$ns" --log-level warn "$@"
}

# Restore-counting wrappers for the in-sync check: each logs its argv, then runs the real tool.
WRAP=$WORK/wrap
mkdir -p "$WRAP"
for tool in iptables-legacy-restore ip6tables-legacy-restore iptables-nft-restore \
    ip6tables-nft-restore ipset; do
    real=$(command -v $tool)
    printf '#!/bin/sh\necho "%s $*" >>%s/calls\nexec %s "$@"\n' "$tool" "$WRAP" "$real" >"$WRAP/$tool"
    chmod +x "$WRAP/$tool"
done

endpoints_of() { case $1 in S) echo 2 ;; M) echo 10 ;; L) echo 20 ;; esac; }

# floor payloads for DIR rendered in NS: ipsets.txt, v4.txt, v6.txt under OUT.
render_payloads() {
    local ns=$1 be=$2 dir=$3 out=$4
    mkdir -p "$out"
    {
        hf "$ns" "$be" "$dir" render --family 4 --ipsets
        hf "$ns" "$be" "$dir" render --family 6 --ipsets
    } >"$out/ipsets.txt"
    hf "$ns" "$be" "$dir" render --family 4 >"$out/v4.txt"
    hf "$ns" "$be" "$dir" render --family 6 >"$out/v6.txt"
}

# changed_chains OLD NEW: iptables-restore --noflush input holding only the chains that differ.
changed_chains() {
    python3 - "$1" "$2" <<'EOF'
import sys
def parse(path):
    tables, cur = {}, None
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("*"):
            cur = tables.setdefault(line[1:], {})
        elif line.startswith(":") and cur is not None:
            cur.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A ") and cur is not None:
            cur.setdefault(line.split()[1], []).append(line)
    return tables
old, new = parse(sys.argv[1]), parse(sys.argv[2])
for t, chains in new.items():
    diff = [c for c, rules in chains.items() if old.get(t, {}).get(c) != rules]
    if not diff:
        continue
    print("*" + t)
    for c in diff:
        print(":%s - [0:0]" % c)
    for c in diff:
        print("\n".join(chains[c]))
    print("COMMIT")
EOF
}

bench_scale_backend() {
    local scale=$1 be=$2 dir=$WORK/pol-$1 eps
    eps=$(endpoints_of "$scale")
    local v4=iptables-$be-restore v6=ip6tables-$be-restore t0 t1 ns reps=$REPS warm=1
    local s4=iptables-$be-save s6=ip6tables-$be-save
    # L's applies take tens of seconds here: fewer repetitions keep the run under 30 minutes.
    # and without the warm-up repetition (r = 0): an L apply runs for minutes, so what a
    # warm page cache saves is noise there.
    if [ "$scale" = L ]; then
        reps=${BENCH_REPS_L:-1}
        warm=0
    fi

    echo "== $scale / $be: first apply vs floor" >&2
    mkns "$eps"
    render_payloads "$NS" "$be" "$dir" "$WORK/pay-$scale"
    delns "$NS"
    for ((r = 1 - warm; r <= reps; r++)); do
        mkns "$eps"
        t0=$(now_us)
        if ! hf "$NS" "$be" "$dir" apply >/dev/null 2>"$WORK/apply.err"; then
            # Recorded, and the rest of this scale/backend skipped: every later stage needs it.
            tail -3 "$WORK/apply.err" >&2
            record "$scale" "$be" apply_failed 1
            delns "$NS"
            return 0
        fi
        t1=$(now_us)
        [ $r = 0 ] || record "$scale" "$be" apply_full $((t1 - t0))
        delns "$NS"
        mkns "$eps"
        t0=$(now_us)
        ip netns exec "$NS" sh -c "ipset restore <'$WORK/pay-$scale/ipsets.txt' &&
            $v4 <'$WORK/pay-$scale/v4.txt' && $v6 <'$WORK/pay-$scale/v6.txt'"
        t1=$(now_us)
        [ $r = 0 ] || record "$scale" "$be" floor_full $((t1 - t0))
        delns "$NS"
        # The same payload with --noflush, which hostfw must use (a plain restore flushes the
        # whole table, foreign rules included): on nft this mode alone costs more, ~12x at L
        # (6.5 minutes for IPv4 alone), so L runs it only when asked (BENCH_NOFLUSH_L=1).
        [ "$scale" != L ] || [ "${BENCH_NOFLUSH_L:-0}" = 1 ] || continue
        mkns "$eps"
        t0=$(now_us)
        ip netns exec "$NS" sh -c "ipset restore <'$WORK/pay-$scale/ipsets.txt' &&
            $v4 --noflush <'$WORK/pay-$scale/v4.txt' && $v6 --noflush <'$WORK/pay-$scale/v6.txt'"
        t1=$(now_us)
        [ $r = 0 ] || record "$scale" "$be" floor_full_noflush $((t1 - t0))
        delns "$NS"
    done

    echo "== $scale / $be: one-rule change, one set member, in-sync" >&2
    mkns "$eps"
    ns=$NS
    local edir=$WORK/edit-$scale-$be
    rm -rf "$edir"
    cp -r "$dir" "$edir"
    hf "$ns" "$be" "$edir" apply >/dev/null
    cp "$edir/50-edit.yaml" "$WORK/edit-a.yaml"
    sed 's/ports: \[40000\]/ports: [40001]/' "$WORK/edit-a.yaml" >"$WORK/edit-b.yaml"
    hf "$ns" "$be" "$edir" render --family 4 >"$WORK/a4.txt"
    hf "$ns" "$be" "$edir" render --family 6 >"$WORK/a6.txt"
    cp "$WORK/edit-b.yaml" "$edir/50-edit.yaml"
    hf "$ns" "$be" "$edir" render --family 4 >"$WORK/b4.txt"
    hf "$ns" "$be" "$edir" render --family 6 >"$WORK/b6.txt"
    changed_chains "$WORK/a4.txt" "$WORK/b4.txt" >"$WORK/d4.txt"
    changed_chains "$WORK/a6.txt" "$WORK/b6.txt" >"$WORK/d6.txt"
    cp "$WORK/edit-a.yaml" "$edir/50-edit.yaml"
    record "$scale" "$be" changed_chains "$(grep -c '^:' "$WORK/d4.txt" "$WORK/d6.txt" | awk -F: '{s+=$2} END {print s}')"
    for ((r = 1 - warm; r <= reps; r++)); do
        if [ $(((r - 1 + warm) % 2)) = 0 ]; then cp "$WORK/edit-b.yaml" "$edir/50-edit.yaml"; else cp "$WORK/edit-a.yaml" "$edir/50-edit.yaml"; fi
        t0=$(now_us)
        hf "$ns" "$be" "$edir" apply >/dev/null
        t1=$(now_us)
        [ $r = 0 ] || record "$scale" "$be" apply_one_rule $((t1 - t0))
        t0=$(now_us)
        ip netns exec "$ns" sh -c "$v4 --noflush <'$WORK/d4.txt' && $v6 --noflush <'$WORK/d6.txt'"
        t1=$(now_us)
        [ $r = 0 ] || record "$scale" "$be" floor_one_rule $((t1 - t0))
        # What a one-shot apply cannot avoid without a cache: one read of everything, the
        # changed chains' restore, a read of the tables written (the verification).
        t0=$(now_us)
        ip netns exec "$ns" sh -c "$s4 >/dev/null && $s6 >/dev/null && ipset save >/dev/null &&
            $v4 --noflush <'$WORK/d4.txt' && $v6 --noflush <'$WORK/d6.txt' &&
            $s4 -t filter >/dev/null && $s6 -t filter >/dev/null"
        t1=$(now_us)
        [ $r = 0 ] || record "$scale" "$be" floor_one_shot $((t1 - t0))
    done
    # The floor rewrote the changed chains with the "b" content: make the kernel match the files.
    hf "$ns" "$be" "$edir" apply >/dev/null
    for ((r = 1 - warm; r <= reps; r++)); do
        echo "  - 192.0.2.$((r + 1))/32" >>"$edir/04-bignet.yaml"
        t0=$(now_us)
        hf "$ns" "$be" "$edir" apply >/dev/null
        t1=$(now_us)
        [ $r = 0 ] || record "$scale" "$be" apply_set_member $((t1 - t0))
    done
    for ((r = 1 - warm; r <= reps; r++)); do
        rm -f "$WRAP/calls"
        t0=$(now_us)
        PATH=$WRAP:$PATH hf "$ns" "$be" "$edir" apply >/dev/null
        t1=$(now_us)
        [ $r = 0 ] || record "$scale" "$be" apply_in_sync $((t1 - t0))
        [ $r = 0 ] || record "$scale" "$be" in_sync_restores "$(cat "$WRAP/calls" 2>/dev/null | grep -c -e '-restore' -e '^ipset restore' || true)"
        t0=$(now_us)
        ip netns exec "$ns" sh -c "$s4 >/dev/null && $s6 >/dev/null && ipset save >/dev/null"
        t1=$(now_us)
        [ $r = 0 ] || record "$scale" "$be" floor_read $((t1 - t0))
    done
    # Stop here: the daemon starts from an empty namespace.
    delns "$ns"

    echo "== $scale / $be: daemon reaction latency, RSS, idle wake-ups" >&2
    mkns "$eps"
    ns=$NS
    rm -rf "$edir"
    cp -r "$dir" "$edir"
    ip netns exec "$ns" "$BIN" --policy-dir "$edir" --node bench --backend "$be" \
        --run-dir "$WORK/run-$ns" --state-dir "$WORK/state-$ns" --log-level warn run \
        2>"$WORK/daemon-$ns.log" &
    DAEMON=$!
    # L's edits take ~30 s each here (legacy rewrites the whole table): 3 keep the run short.
    local edits=$EDITS
    [ "$scale" != L ] || edits=${BENCH_EDITS_L:-3}
    python3 - "$WORK/run-$ns/status.json" "$edir" "$edits" "$DAEMON" "$IDLE" >"$WORK/daemon.out" <<'EOF'
import json, os, subprocess, sys, time
status, d, edits, pid, idle = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
def generation():
    try:
        with open(status) as f:
            p = json.load(f).get("policy") or {}
        return p.get("generation", 0)
    except (OSError, ValueError):
        return 0
def wait_above(g, limit):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if generation() > g:
            return True
        time.sleep(0.002)
    return False
if not wait_above(0, 600):
    sys.exit("daemon never applied the first generation")
text = open(os.path.join(d, "50-edit.yaml")).read()
for i in range(edits):
    g = generation()
    tmp = os.path.join(d, ".edit.tmp")
    with open(tmp, "w") as f:
        f.write(text.replace("[40000]", "[%d]" % (41000 + i)))
    t0 = time.monotonic()
    os.rename(tmp, os.path.join(d, "50-edit.yaml"))
    if not wait_above(g, 120):
        sys.exit("edit %d never applied" % i)
    print("latency_us", int((time.monotonic() - t0) * 1e6))
    time.sleep(0.3)
def switches():
    n = 0
    for t in os.listdir("/proc/%s/task" % pid):
        for line in open("/proc/%s/task/%s/status" % (pid, t)):
            if "ctxt_switches" in line:
                n += int(line.split()[1])
    return n
def hwm():
    for line in open("/proc/%s/status" % pid):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
def wake_episodes(path):
    # One wake-up = a burst of syscalls; bursts are separated by more than 20 ms of silence.
    last, n = None, 0
    for line in open(path):
        parts = line.split()
        if len(parts) < 3 or ":" not in parts[1]:
            continue
        h, m, sec = parts[1].split(":")
        t = int(h) * 3600 + int(m) * 60 + float(sec)
        if last is None or t - last > 0.02:
            n += 1
        last = t
    return n
time.sleep(2)
s0 = switches()
time.sleep(idle)
print("idle_wakeups", switches() - s0)
print("idle_window", int(idle))
# Then a second window under strace (ptrace stops would inflate the switch count above): each
# burst of syscalls is one wake-up, to hold against the configured timers.
window = max(5, int(idle / 2))
trace = os.path.join(os.path.dirname(status), "idle.strace")
cmd = ["timeout", str(window), "strace", "-qq", "-tt", "-e", "trace=!futex", "-o", trace]
for t in os.listdir("/proc/%s/task" % pid):
    cmd += ["-p", t]
try:
    subprocess.run(cmd, stderr=subprocess.DEVNULL)
    print("idle_wake_episodes", wake_episodes(trace))
    print("idle_strace_window", window)
except OSError:
    pass
print("daemon_rss_kb", hwm())
EOF
    kill "$DAEMON"
    wait "$DAEMON" 2>/dev/null || true
    DAEMON=
    while read -r k v; do record "$scale" "$be" "$k" "$v"; done <"$WORK/daemon.out"
    delns "$ns"
}

# Per-packet cost: TCP connections per second from a peer namespace into the host namespace
# (through bench0's endpoint chain), with and without the policy holding the large set.
per_packet() {
    local scale=$1 be=$2 dir=$WORK/pol-$1 eps host peer
    eps=$(endpoints_of "$scale")
    echo "== $scale / $be: per-packet cost of the large set" >&2
    mkns 0
    peer=$NS
    mkns "$eps"
    host=$NS
    ip -n "$host" link del bench0 # its veth peer goes with it
    ip -n "$host" link add bench0 type veth peer name eth0 netns "$peer"
    ip -n "$host" addr add 198.51.100.1/24 dev bench0
    ip -n "$peer" addr add 198.51.100.2/24 dev eth0
    ip -n "$host" link set bench0 up
    ip -n "$peer" link set eth0 up
    local with=$WORK/pp-with without=$WORK/pp-without
    rm -rf "$with" "$without"
    cp -r "$dir" "$with"
    cp -r "$dir" "$without"
    rm "$without/40-bignet-policy.yaml"
    ip netns exec "$host" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.51.100.1", 9999)); s.listen(1024)
while True:
    c, _ = s.accept(); c.close()' &
    LISTENER=$!
    sleep 0.5
    # Each round re-applies the policy set twice; at L that is minutes, so two rounds there.
    local rounds=3
    [ "$scale" != L ] || rounds=2
    for ((round = 1; round <= rounds; round++)); do
        for variant in with without; do
            local vdir=$WORK/pp-$variant
            hf "$host" "$be" "$vdir" apply >/dev/null
            rate=$(ip netns exec "$peer" python3 -c '
import socket, struct, time
n, end = 0, time.monotonic() + 3
while time.monotonic() < end:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.settimeout(5)
    try:
        s.connect(("198.51.100.1", 9999)); n += 1
    except OSError:
        pass
    s.close()
print(int(n / 3))')
            record "$scale" "$be" "conn_rate_$variant" "$rate"
        done
    done
    kill "$LISTENER"
    wait "$LISTENER" 2>/dev/null || true
    LISTENER=
    delns "$host"
    delns "$peer"
}

START=$(date +%s)
for scale in $SCALES; do
    eps=$(endpoints_of "$scale")
    echo "== $scale: generate, check, load+validate+resolve, render" >&2
    "$PERF" gen "$scale" "$WORK/pol-$scale"
    "$BIN" check "$WORK/pol-$scale" >/dev/null 2>"$WORK/check.err" || {
        cat "$WORK/check.err" >&2
        die "generated $scale policies fail hostfw check"
    }
    "$PERF" stages "$WORK/pol-$scale" "$eps" "$REPS" | while read -r k rest; do
        case $k in
        stage) set -- $rest; name=$1; shift; for v in "$@"; do record "$scale" - "$name" "$v"; done ;;
        *) record "$scale" - "$k" "$rest" ;;
        esac
    done
    for be in $BACKENDS; do
        bench_scale_backend "$scale" "$be"
    done
done
# The large set's per-packet cost, on the largest scale run and the first backend.
last=${SCALES##* }
per_packet "$last" "${BACKENDS%% *}"

summary "$RESULTS" "$(($(date +%s) - START))" "$IDLE"
