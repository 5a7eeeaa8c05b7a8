//! Taking over a host where calico-felix v3.32.1 ran (tests/data/felix-takeover/): Felix's
//! captured tables (raw, mangle, filter, nat; both families, with counters) and ipsets are
//! loaded into a namespace, then `hostfw apply` runs while a probe keeps sending traffic that
//! both Felix's and hostfw's rules deny. Checks: the plan is exactly the expected one (chains
//! hostfw renders identically are left alone: their counters, or on nft their rule handles,
//! survive), Felix-only leftovers
//! (nat chains and hooks, workload chains, pool ipsets) are gone, the probe never got through,
//! and a second pass finds nothing to do.

use crate::netns::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const DATA: &str = "tests/data/felix-takeover";

/// Every rule of the fixture carries this packet count; a rule that hostfw rewrote starts again
/// from zero, and the test's own traffic is far below it.
const FIXTURE_PACKETS: u64 = 1000;

/// A port nothing allows (not failsafe, not in the policy): the probe's target.
const DENIED_PORT: u16 = 9999;

/// The port the fixture's policy opens to the peer.
const WEB_PORT: u16 = 8080;

fn fixture(name: &str) -> String {
    let path = Path::new(DATA).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Per table, per chain: an identity for each of the chain's rules that changes when the rule
/// is written again. Legacy: whether the rule still has the fixture's packet count (from
/// `iptables-save --counters`). nft: the rule's handle (from `nft -a list table`), because
/// ip6tables-nft-restore 1.8.9 drops `--counters`.
type RuleIds = BTreeMap<(String, String), Vec<String>>;

fn rule_ids(ns: &Netns, backend: &str, v6: bool) -> RuleIds {
    let mut out: RuleIds = BTreeMap::new();
    if backend == "legacy" {
        let tool = format!("{}-legacy-save", if v6 { "ip6tables" } else { "iptables" });
        let mut table = String::new();
        for line in ns.must(&[&tool, "--counters"]).lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
                continue;
            }
            let Some(rest) = line.strip_prefix('[') else {
                continue;
            };
            let (count, rule) = rest.split_once("] -A ").expect("counted rule line");
            let packets: u64 = count
                .split(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("packet count");
            let chain = rule.split_whitespace().next().expect("chain name");
            let id = if packets >= FIXTURE_PACKETS {
                "fixture"
            } else {
                "written"
            };
            out.entry((table.clone(), chain.to_string()))
                .or_default()
                .push(id.to_string());
        }
        return out;
    }
    let family = if v6 { "ip6" } else { "ip" };
    for table in ["raw", "mangle", "filter", "nat"] {
        let listing = ns.exec(&["nft", "-a", "list", "table", family, table]);
        let mut chain = String::new();
        for line in String::from_utf8_lossy(&listing.stdout).lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("chain ") {
                chain = rest.split_whitespace().next().unwrap_or("").to_string();
            } else if let Some((_, handle)) = line.rsplit_once("# handle ") {
                if !line.starts_with("table ") {
                    out.entry((table.to_string(), chain.clone()))
                        .or_default()
                        .push(handle.trim().to_string());
                }
            }
        }
    }
    out
}

/// The chains (as `table chain`) some of whose rules of `before` were written again, and the
/// `cali-` chains with rules in `before` that no longer exist.
fn rewritten_and_gone(before: &RuleIds, after: &RuleIds) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut rewritten = BTreeSet::new();
    let mut gone = BTreeSet::new();
    for ((table, chain), old) in before {
        let label = format!("{table} {chain}");
        match after.get(&(table.clone(), chain.clone())) {
            None if chain.starts_with("cali-") => {
                gone.insert(label);
            }
            None => {}
            Some(new) => {
                // A kernel chain also holds foreign rules; only the fixture's are compared.
                let kept = old.iter().filter(|id| *id != "written" && new.contains(id));
                if kept.count() != old.len() {
                    rewritten.insert(label);
                }
            }
        }
    }
    (rewritten, gone)
}

/// UDP datagrams sent without pause from the peer to a denied port of the host, and counted on
/// arrival, until stopped: any arrival means the host let denied traffic through.
struct DeniedProbe {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl DeniedProbe {
    fn start(pair: &Pair, targets: &[SocketAddr]) -> DeniedProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for &to in targets {
            let server = pair.host.run_in(move || {
                let s = UdpSocket::bind(to).unwrap_or_else(|e| panic!("bind {to}: {e}"));
                s.set_read_timeout(Some(Duration::from_millis(20)))
                    .expect("read timeout");
                s
            });
            let client = pair.peer.run_in(move || {
                let any: SocketAddr = if to.is_ipv4() {
                    "0.0.0.0:0".parse().expect("v4 any")
                } else {
                    "[::]:0".parse().expect("v6 any")
                };
                UdpSocket::bind(any).expect("bind probe client")
            });
            let (flag, count) = (stop.clone(), received.clone());
            threads.push(thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !flag.load(Ordering::SeqCst) {
                    if server.recv_from(&mut buf).is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
            let (flag, count) = (stop.clone(), sent.clone());
            threads.push(thread::spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    if client.send_to(b"probe", to).is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    thread::sleep(Duration::from_micros(200));
                }
            }));
        }
        DeniedProbe {
            stop,
            sent,
            received,
            threads,
        }
    }

    /// Blocks until at least `n` datagrams went out (so the probe provably ran before what
    /// follows).
    fn wait_sent(&self, n: usize) {
        while self.sent.load(Ordering::SeqCst) < n {
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the probe; returns how many datagrams arrived.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("probe thread");
        }
        self.received.load(Ordering::SeqCst)
    }
}

fn takeover(backend: &str) {
    let pair = Pair::new(&format!("felix-{backend}"));
    let work = Workdir::new();
    work.write_policies(&fixture("policies/takeover.yaml"));

    // Felix's state: sets first (its rules name them), then both families with counters.
    feed(&pair.host, &["ipset", "restore"], &fixture("felix.ipsets"));
    for (v6, name) in [(false, "felix-v4.save"), (true, "felix-v6.save")] {
        let tool = format!(
            "{}-{backend}-restore",
            if v6 { "ip6tables" } else { "iptables" }
        );
        feed(&pair.host, &[&tool, "--counters"], &fixture(name));
    }
    let before = [false, true].map(|v6| rule_ids(&pair.host, backend, v6));

    // What hostfw makes of it: exactly the expected plan (identical chains not listed).
    let diff = hostfw(&pair.host, &work, SCENARIO_NODE, backend, &["diff"]);
    assert_eq!(diff.code, 1, "{diff:?}");
    assert_eq!(diff.stdout, fixture("expected-diff.txt"), "{diff:?}");

    let _web4 = tcp_server(&pair.host, sock(HOST4, WEB_PORT));
    let _web6 = tcp_server(&pair.host, sock(HOST6, WEB_PORT));
    assert!(tcp_ok(&pair.peer, None, sock(HOST4, WEB_PORT)));

    // The takeover, with denied traffic flowing the whole time.
    let probe = DeniedProbe::start(&pair, &[sock(HOST4, DENIED_PORT), sock(HOST6, DENIED_PORT)]);
    probe.wait_sent(20);
    let sent_before = probe.sent.load(Ordering::SeqCst);
    let run = hostfw(&pair.host, &work, SCENARIO_NODE, backend, &["apply"]);
    let sent_during = probe.sent.load(Ordering::SeqCst) - sent_before;
    let received = probe.stop();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        sent_during > 0,
        "the probe kept sending while hostfw applied"
    );
    assert_eq!(
        received, 0,
        "denied datagrams got through during the takeover"
    );

    // Identical chains were left alone; exactly the planned ones were written.
    for (v6, before) in [false, true].into_iter().zip(&before) {
        let after = rule_ids(&pair.host, backend, v6);
        let (rewritten, gone) = rewritten_and_gone(before, &after);
        let family = if v6 { "v6" } else { "v4" };
        assert_eq!(
            rewritten.into_iter().collect::<Vec<_>>().join("\n") + "\n",
            fixture(&format!("expected-rewritten-{family}.txt")),
            "{family}: chains written again"
        );
        assert_eq!(
            gone.into_iter().collect::<Vec<_>>().join("\n") + "\n",
            fixture(&format!("expected-removed-{family}.txt")),
            "{family}: Felix-only chains removed"
        );
        let tool = format!(
            "{}-{backend}-save",
            if v6 { "ip6tables" } else { "iptables" }
        );
        let nat = pair.host.must(&[&tool, "-t", "nat"]);
        let ours: Vec<&str> = nat.lines().filter(|l| l.contains("cali")).collect();
        assert!(ours.is_empty(), "{family} nat keeps Felix rules: {ours:?}");
    }
    let sets = pair.host.must(&["ipset", "list", "-n"]);
    let mut sets: Vec<&str> = sets.lines().collect();
    sets.sort_unstable();
    assert_eq!(sets.join("\n") + "\n", fixture("expected-ipsets.txt"));

    // Traffic after the takeover is what the policy says, and nothing is left to do.
    assert!(tcp_ok(&pair.peer, None, sock(HOST4, WEB_PORT)));
    assert!(tcp_ok(&pair.peer, None, sock(HOST6, WEB_PORT)));
    let again = hostfw(&pair.host, &work, SCENARIO_NODE, backend, &["diff"]);
    assert_eq!(again.code, 0, "{again:?}");
}

on_both_backends!(takeover);
