//! Real-kernel lifecycle tests of `hostfw diff/apply/flush` (both backends): coexistence with
//! other tools' chains and nat tables, incremental rewrites that keep other chains' counters, drift repair, a
//! failing restore that leaves the previous state intact, an invalid policy set that writes
//! nothing, a second apply that spawns no restore, and defaultEndpointToHostAction for traffic
//! from a `cali`-prefixed interface.

use crate::netns;

use netns::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const NODE: &str = SCENARIO_NODE;

// Per-file additions to the shared harness's scenario.
impl Scenario {
    fn expect(&self, args: &[&str], code: i32) -> HostfwRun {
        let run = self.run(args);
        assert_eq!(run.code, code, "hostfw {args:?}: {run:?}");
        run
    }

    fn save(&self, v6: bool, table: &str) -> String {
        normalize(&save(&self.pair.host, self.backend, v6, table, false))
    }

    /// Every table of both families, normalised.
    fn save_all(&self) -> String {
        let mut all = String::new();
        for v6 in [false, true] {
            for table in ["raw", "mangle", "filter"] {
                all.push_str(&self.save(v6, table));
            }
        }
        all
    }

    /// `apply` with `extra_path` first in PATH (wrappers that inject failures).
    fn apply_with_path(&self, extra_path: &Path) -> HostfwRun {
        let (ns, work) = (&self.pair.host, &self.work);
        hostfw_with_path(ns, work, NODE, self.backend, &["apply"], Some(extra_path))
    }

    fn restore(&self, v6: bool, input: &str) {
        restore(&self.pair.host, self.backend, v6, input);
    }
}

/// Chain policy lines carry packet counters even without `-c`; zero them.
fn normalize(text: &str) -> String {
    text.lines()
        .map(|l| match (l.starts_with(':'), l.rfind(" [")) {
            (true, Some(at)) => format!("{} [0:0]\n", &l[..at]),
            _ => format!("{l}\n"),
        })
        .collect()
}

/// The lines of a save that are not ours (no `cali` anywhere in them).
fn foreign(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains("cali"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A connection expected to work: probed once more if the first try missed the short timeout
/// (a loaded machine); a blocked flow is never retried, so a leak cannot hide.
fn passes(from: &Netns, from_addr: Option<&str>, to: std::net::SocketAddr) -> bool {
    tcp_ok(from, from_addr, to) || tcp_ok(from, from_addr, to)
}

fn blocked(from: &Netns, from_addr: Option<&str>, to: std::net::SocketAddr) -> bool {
    !tcp_ok(from, from_addr, to)
}

fn web(ports: &str) -> String {
    format!(
        "{}{}",
        allow_ports_policy("web", ports),
        scenario_hep("host-eth0", Some("eth0"), "{role: web}")
    )
}

// ------------------------------------------------------------------------------------------

const FOREIGN_V4: &str = "*filter\n:DOCKER-USER - [0:0]\n:f2b-sshd - [0:0]\n\
    -A INPUT -s 203.0.113.77/32 -j DROP\n\
    -A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n\
    -A FORWARD -j DOCKER-USER\n\
    -A DOCKER-USER -j RETURN\n\
    -A f2b-sshd -s 203.0.113.66/32 -j REJECT --reject-with icmp-port-unreachable\n\
    -A f2b-sshd -j RETURN\nCOMMIT\n\
    *raw\n-A PREROUTING -s 203.0.113.88/32 -j DROP\nCOMMIT\n";

const FOREIGN_V6: &str = "*filter\n:DOCKER-USER - [0:0]\n:f2b-sshd - [0:0]\n\
    -A INPUT -s 2001:db8:ff::77/128 -j DROP\n\
    -A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n\
    -A FORWARD -j DOCKER-USER\n\
    -A DOCKER-USER -j RETURN\n\
    -A f2b-sshd -s 2001:db8:ff::66/128 -j REJECT --reject-with icmp6-port-unreachable\n\
    -A f2b-sshd -j RETURN\nCOMMIT\n";

fn coexistence(backend: &'static str) {
    let s = Scenario::new("coexist", backend, &web("8080"));
    s.restore(false, FOREIGN_V4);
    s.restore(true, FOREIGN_V6);
    let before = s.save_all();
    assert!(
        before.contains("-A f2b-sshd -j RETURN"),
        "setup failed: {before}"
    );

    s.expect(&["apply"], 0);
    let applied = s.save_all();
    assert!(applied.contains("cali-INPUT"), "nothing applied: {applied}");
    assert_eq!(
        foreign(&applied),
        before,
        "foreign rules changed by apply ({backend})"
    );

    s.expect(&["flush"], 0);
    assert_eq!(
        s.save_all(),
        before,
        "flush left or removed something ({backend})"
    );
}
on_both_backends!(coexistence);

const FOREIGN_NAT_V4: &str = "*nat\n:DOCKER - [0:0]\n\
    -A PREROUTING -p tcp -m tcp --dport 8081 -j DNAT --to-destination 203.0.113.5:80\n\
    -A POSTROUTING -s 203.0.113.0/24 -j MASQUERADE\n\
    -A DOCKER -j RETURN\nCOMMIT\n";

const FOREIGN_NAT_V6: &str = "*nat\n-A POSTROUTING -s 2001:db8:5::/48 -j MASQUERADE\nCOMMIT\n";

/// Another tool's nat table (Docker, a router's masquerade): a table hostfw does not own,
/// printed by every save of the family, including the one that reads a small family back after
/// a write. Left byte for byte by apply, a second apply finds everything in sync, and flush.
fn foreign_nat_table(backend: &'static str) {
    let s = Scenario::new("nat", backend, &web("8080"));
    s.restore(false, FOREIGN_NAT_V4);
    s.restore(true, FOREIGN_NAT_V6);
    let nat = || [s.save(false, "nat"), s.save(true, "nat")];
    let before = nat();
    assert!(before[0].contains("MASQUERADE"), "setup failed: {before:?}");

    s.expect(&["apply"], 0);
    assert!(s.save_all().contains("cali-INPUT"), "nothing applied");
    assert_eq!(nat(), before, "apply changed the nat tables ({backend})");
    let again = s.expect(&["apply"], 0);
    assert!(again.stdout.contains("in sync"), "{again:?}");
    s.expect(&["diff"], 0);

    s.expect(&["flush"], 0);
    assert_eq!(nat(), before, "flush changed the nat tables ({backend})");
}
on_both_backends!(foreign_nat_table);

// ------------------------------------------------------------------------------------------

/// `[pkts:bytes] -A CHAIN rule` lines of a `save -c`, by chain.
fn counted_rules(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('[')) {
        let chain = line
            .split_whitespace()
            .nth(2)
            .expect("`[c] -A CHAIN` line")
            .to_string();
        chains.entry(chain).or_default().push(line.to_string());
    }
    chains
}

fn packets(line: &str) -> u64 {
    line.trim_start_matches('[')
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn incremental(backend: &'static str) {
    let policies = |b_port: &str| {
        format!(
            "{}{}{}",
            allow_ports_policy("svc-a", "8080"),
            allow_ports_policy("svc-b", b_port),
            scenario_hep("host-eth0", Some("eth0"), "{role: web}")
        )
    };
    let s = Scenario::new("incr", backend, &policies("9090"));
    let (host, peer) = (&s.pair.host, &s.pair.peer);
    let _servers = [8080, 9090, 9091].map(|p| tcp_server(host, sock("::", p)));
    s.expect(&["apply"], 0);
    for port in [8080, 9090] {
        assert!(
            passes(peer, None, sock(HOST4, port)),
            "port {port} before the change"
        );
    }
    let before = counted_rules(&save(host, backend, false, "filter", true));

    s.work.write_policies(&policies("9091"));
    let diff = s.expect(&["diff", "--output", "json"], 1);
    let plan: serde_json::Value = serde_json::from_str(&diff.stdout).expect("diff JSON");
    let mut rewritten = BTreeSet::new();
    for table in plan["tables"].as_array().expect("tables") {
        assert_eq!(table["create"], serde_json::json!([]), "{table}");
        assert_eq!(table["delete"], serde_json::json!([]), "{table}");
        assert_eq!(table["hooks"], serde_json::json!([]), "{table}");
        for chain in table["rewrite"].as_array().expect("rewrite") {
            rewritten.insert(chain.as_str().expect("name").to_string());
        }
    }
    // Only svc-b's inbound policy chain changes (same name in both families).
    assert_eq!(rewritten.len(), 1, "{rewritten:?}");
    let changed = rewritten.iter().next().expect("one chain").clone();
    assert!(
        changed.starts_with("cali-pi-") && changed.contains("svc-b"),
        "{changed}"
    );

    s.expect(&["apply"], 0);
    let after = counted_rules(&save(host, backend, false, "filter", true));
    let mut kept_nonzero = 0;
    for (chain, rules) in &before {
        if *chain == changed {
            continue;
        }
        assert_eq!(after.get(chain), Some(rules), "chain {chain} was rewritten");
        kept_nonzero += rules.iter().filter(|r| packets(r) > 0).count();
    }
    // The kept counters were real: traffic had hit rules outside the changed chain.
    assert!(
        kept_nonzero > 0,
        "no counted rule outside {changed}: {before:?}"
    );
    assert!(
        after[&changed].iter().all(|r| packets(r) == 0),
        "{:?}",
        after[&changed]
    );
    assert!(passes(peer, None, sock(HOST4, 9091)));
    assert!(blocked(peer, None, sock(HOST4, 9090)));
}
on_both_backends!(incremental);

// ------------------------------------------------------------------------------------------

/// The line of `table` in `save` (v4) that is our hook in `kernel_chain`.
fn hook_line(s: &Scenario, kernel_chain: &str, target: &str) -> String {
    s.save(false, "filter")
        .lines()
        .find(|l| {
            l.starts_with(&format!("-A {kernel_chain} ")) && l.ends_with(&format!("-j {target}"))
        })
        .unwrap_or_else(|| panic!("no hook to {target} in {kernel_chain}"))
        .to_string()
}

/// After a tampering that reopened port 9090: the flow passes, `diff` reports the drift (exit 1,
/// naming `fix`), `apply` repairs it and `diff` is clean again. Callers check the flow after.
fn reported_and_repaired(s: &Scenario, peer: &Netns, what: &str, fix: &str) {
    assert!(
        passes(peer, None, sock(HOST4, 9090)),
        "{what} had no effect"
    );
    let report = s.expect(&["diff"], 1);
    assert!(report.stdout.contains(fix), "{report:?}");
    s.expect(&["apply"], 0);
    s.expect(&["diff"], 0);
}

fn drift(backend: &'static str) {
    let s = Scenario::new("drift", backend, &web("8080"));
    let (host, peer) = (&s.pair.host, &s.pair.peer);
    let _servers = [8080, 9090].map(|p| tcp_server(host, sock("::", p)));
    s.expect(&["apply"], 0);
    s.expect(&["diff"], 0);
    assert!(blocked(peer, None, sock(HOST4, 9090)));

    // 1. Someone deletes our INPUT hook: the host is open.
    let hook = hook_line(&s, "INPUT", "cali-INPUT");
    let delete = hook.replacen("-A ", "-D ", 1);
    s.restore(false, &format!("*filter\n{delete}\nCOMMIT\n"));
    reported_and_repaired(
        &s,
        peer,
        "hook removal",
        "IPv4 filter: fix hook rules in INPUT",
    );
    assert!(blocked(peer, None, sock(HOST4, 9090)), "hook not repaired");

    // 2. Someone flushes one of our chains.
    s.restore(false, "*filter\n-F cali-INPUT\nCOMMIT\n");
    reported_and_repaired(&s, peer, "flush", "IPv4 filter: rewrite chain cali-INPUT");
    assert!(blocked(peer, None, sock(HOST4, 9090)), "chain not repaired");

    // 3. Someone inserts an ACCEPT above our hook (insert mode: ours must come first).
    let foreign_rule = "-A INPUT -p tcp -m tcp --dport 9090 -j ACCEPT";
    s.restore(
        false,
        "*filter\n-I INPUT 1 -p tcp -m tcp --dport 9090 -j ACCEPT\nCOMMIT\n",
    );
    reported_and_repaired(&s, peer, "foreign accept", "fix hook rules in INPUT");
    let input: Vec<String> = s
        .save(false, "filter")
        .lines()
        .filter(|l| l.starts_with("-A INPUT "))
        .map(String::from)
        .collect();
    assert!(input[0].ends_with("-j cali-INPUT"), "{input:?}");
    assert_eq!(input[1], foreign_rule, "{input:?}");
    assert!(
        blocked(peer, None, sock(HOST4, 9090)),
        "our hook is not first again"
    );
}
on_both_backends!(drift);

// ------------------------------------------------------------------------------------------

/// A directory of `ip[6]tables-<backend>-restore` wrappers that always fail.
fn failing_restores(dir: &Path, backend: &str) {
    use std::os::unix::fs::PermissionsExt;
    for tool in ["iptables", "ip6tables"] {
        for name in [
            format!("{tool}-{backend}-restore"),
            format!("{tool}-restore"),
        ] {
            let path = dir.join(name);
            std::fs::write(
                &path,
                "#!/bin/sh\ncat >/dev/null\necho \"injected failure: Couldn't load match \\`hostfw-test'\" >&2\nexit 1\n",
            )
            .expect("write wrapper");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod wrapper");
        }
    }
}

fn failure(backend: &'static str) {
    let s = Scenario::new("failure", backend, &web("8080"));
    let (host, peer) = (&s.pair.host, &s.pair.peer);
    let _servers = [8080, 9090].map(|p| tcp_server(host, sock("::", p)));
    s.expect(&["apply"], 0);
    let good = s.save_all();
    let wrappers = tempfile::tempdir().expect("tempdir");
    failing_restores(wrappers.path(), backend);

    // In sync: a second apply spawns no restore at all (the wrappers would fail it).
    let again = s.apply_with_path(wrappers.path());
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("in sync"), "{again:?}");

    // A change whose restore fails: exit 2, the error carries stderr and input, state intact.
    s.work.write_policies(&web("9090"));
    let failed = s.apply_with_path(wrappers.path());
    assert_eq!(failed.code, 2, "{failed:?}");
    assert!(failed.stderr.contains("injected failure"), "{failed:?}");
    assert!(
        failed.stderr.contains("*filter"),
        "no restore input in: {failed:?}"
    );
    assert!(failed.stderr.contains("5 attempt(s)"), "{failed:?}");
    assert_eq!(s.save_all(), good, "a failed apply changed the kernel");
    assert!(passes(peer, None, sock(HOST4, 8080)));
    assert!(blocked(peer, None, sock(HOST4, 9090)));

    // Without the fault the same change applies.
    s.expect(&["apply"], 0);
    assert!(passes(peer, None, sock(HOST4, 9090)));
}
on_both_backends!(failure);

// ------------------------------------------------------------------------------------------

fn invalid_policy_writes_nothing(backend: &'static str) {
    let s = Scenario::new("invalid", backend, &web("8080"));
    let empty = s.save_all();
    let broken = format!(
        "{}{}",
        web("8080"),
        allow_ports_policy("typo", "8080").replace("Allow", "Allw")
    );

    s.work.write_policies(&broken);
    let run = s.expect(&["apply"], 1);
    assert!(run.stderr.contains("error"), "{run:?}");
    assert_eq!(s.save_all(), empty, "an invalid set reached the kernel");
    s.expect(&["diff"], 1);

    s.work.write_policies(&web("8080"));
    s.expect(&["apply"], 0);
    let good = s.save_all();
    s.work.write_policies(&broken);
    s.expect(&["apply"], 1);
    assert_eq!(s.save_all(), good, "an invalid set changed the kernel");
    let dry = s.expect(&["apply", "--dry-run"], 1);
    assert!(dry.stdout.is_empty(), "{dry:?}");
}
on_both_backends!(invalid_policy_writes_nothing);

fn dry_run_writes_nothing(backend: &'static str) {
    let s = Scenario::new("dryrun", backend, &web("8080"));
    let empty = s.save_all();
    let run = s.expect(&["apply", "--dry-run"], 0);
    assert!(
        run.stdout.contains("IPv4 filter: create chain cali-INPUT"),
        "{run:?}"
    );
    assert_eq!(s.save_all(), empty);
    let diff = s.expect(&["diff"], 1);
    assert_eq!(diff.stdout, run.stdout);
}
on_both_backends!(dry_run_writes_nothing);

// ------------------------------------------------------------------------------------------

/// Traffic from a `cali`-prefixed (workload) interface to the host goes to `cali-wl-to-host` and
/// meets the configured DefaultEndpointToHostAction (the seed document's feature): Drop blocks
/// it, Accept lets it in. An ordinary interface without a HEP is not policed at all.
fn default_endpoint_to_host_action(backend: &'static str) {
    let felix = |action: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\n\
             spec:\n  defaultEndpointToHostAction: {action}\n{}",
            web("8080")
        )
    };
    let s = Scenario::new("ep2host", backend, &felix("Drop"));
    let host = &s.pair.host;
    let workload = Netns::new(&format!("ep2host-{backend}-w"));
    let plain = Netns::new(&format!("ep2host-{backend}-x"));
    veth(host, "cali1234", &workload, "eth0");
    veth(host, "wl0", &plain, "eth0");
    host.addr("cali1234", "203.0.113.1/25");
    workload.addr("eth0", "203.0.113.2/25");
    host.addr("wl0", "203.0.113.129/25");
    plain.addr("eth0", "203.0.113.130/25");
    neighbours(host, "cali1234", &workload, "eth0", &["203.0.113.2"]);
    neighbours(&workload, "eth0", host, "cali1234", &["203.0.113.1"]);
    neighbours(host, "wl0", &plain, "eth0", &["203.0.113.130"]);
    neighbours(&plain, "eth0", host, "wl0", &["203.0.113.129"]);
    let _server = tcp_server(host, sock("::", 9000));
    assert!(
        passes(&workload, None, sock("203.0.113.1", 9000)),
        "before apply"
    );

    for (action, target, allowed) in [("Drop", "DROP", false), ("Accept", "ACCEPT", true)] {
        s.work.write_policies(&felix(action));
        s.expect(&["apply"], 0);
        let filter = s.save(false, "filter");
        let configured = filter
            .lines()
            .find(|l| {
                l.starts_with("-A cali-wl-to-host ")
                    && l.contains("Configured DefaultEndpointToHostAction")
            })
            .unwrap_or_else(|| panic!("no DefaultEndpointToHostAction rule: {filter}"));
        assert!(
            configured.ends_with(&format!("-j {target}")),
            "{configured}"
        );
        if allowed {
            assert!(
                passes(&workload, None, sock("203.0.113.1", 9000)),
                "{action}: traffic from cali1234 was blocked"
            );
        } else {
            assert!(
                blocked(&workload, None, sock("203.0.113.1", 9000)),
                "{action}: traffic from cali1234 passed"
            );
        }
        assert!(
            passes(&plain, None, sock("203.0.113.129", 9000)),
            "{action}: traffic from an unpoliced interface was blocked"
        );
    }
}
on_both_backends!(default_endpoint_to_host_action);

// ------------------------------------------------------------------------------------------

/// Auto-detection follows hostfw's own state, and refuses when both backends hold it.
#[test]
fn auto_backend_follows_our_state_and_refuses_when_ambiguous() {
    if !kernel_tests_enabled() {
        return;
    }
    let (pair, work) = pair_with_policies("autobe", &web("8080"));
    let run = |backend: &str, args: &[&str]| hostfw(&pair.host, &work, NODE, backend, args);

    let legacy = run("legacy", &["apply"]);
    assert_eq!(legacy.code, 0, "{legacy:?}");
    // Only legacy holds our state: auto picks it and finds it in sync.
    let auto = run("auto", &["diff"]);
    assert_eq!(auto.code, 0, "{auto:?}");
    assert!(auto.stdout.contains("backend legacy"), "{auto:?}");

    let nft = run("nft", &["apply"]);
    assert_eq!(nft.code, 0, "{nft:?}");
    let refused = run("auto", &["apply"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("both iptables backends hold")
            && refused.stderr.contains("--backend"),
        "{refused:?}"
    );

    // Cleaning one backend up makes auto-detection unambiguous again.
    assert_eq!(run("legacy", &["flush"]).code, 0);
    let auto = run("auto", &["diff"]);
    assert_eq!(auto.code, 0, "{auto:?}");
    assert!(auto.stdout.contains("backend nft"), "{auto:?}");
}
