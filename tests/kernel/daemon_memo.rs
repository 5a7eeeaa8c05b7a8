//! `hostfw run`'s render memo against the real kernel: edits that change what an endpoint chain
//! is built from (which policies select it, their order, their selectors, a tier's default
//! action, an endpoint's labels and profiles) made under a running daemon, each followed by a
//! one-shot `hostfw diff`, which renders without the memo and must find the kernel in sync, and
//! by real packets to both endpoints.
//!
//! Waits are bounded polls ("within 15 s"), never assertions about how fast something was.

use crate::daemon_netns::{put, Daemon, BACKEND, NODE};
use crate::netns;

use netns::{
    felix_configuration, kernel_tests_enabled, sock, tcp_ok, tcp_server, veth, Netns, Pair, Server,
    Workdir, HOST4,
};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(15);

/// The host's address on eth1, and the address of the namespace behind it.
const HOST_ETH1: &str = "203.0.113.1";
const OTHER_ETH1: &str = "203.0.113.2";

/// The ports probed on both endpoints after every edit; servers listen on all of them.
const PORTS: [u16; 4] = [8080, 9090, 7070, 5050];

fn host_endpoint(name: &str, interface: &str, labels: &str, profiles: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: {name}\n  \
         labels: {labels}\nspec:\n  node: {NODE}\n  interfaceName: {interface}\n  \
         profiles: [{profiles}]\n"
    )
}

/// eth1's endpoint; its profiles are reached only when every tier passes.
fn h_eth1(labels: &str, profiles: &str) -> String {
    host_endpoint("h-eth1", "eth1", labels, profiles)
}

const PROFILE_7070: &str = r#"apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: open-7070
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [7070]
"#;

/// The tier `security`, before `default`.
fn tier_security(default_action: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  \
         order: 100\n  defaultAction: {default_action}\n"
    )
}

/// A policy in `security` whose one rule matches nothing probed: what reaches the tier's end
/// gets the tier's default action.
const SECURITY_GUARD: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: security.guard
spec:
  tier: security
  order: 10
  selector: role == 'db' || zone == 'b'
  ingress:
  - action: Deny
    protocol: TCP
    destination:
      ports: [6060]
"#;

/// An allow and a deny of 8080 in one file, so swapping their orders is one edit. With equal
/// selectors and adjacent orders they form one policy group.
fn policies_8080(
    allow_order: u32,
    allow_ports: &str,
    deny_order: u32,
    deny_selector: &str,
) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  \
         name: allow-8080\nspec:\n  order: {allow_order}\n  selector: role == 'web'\n  ingress:\n  \
         - action: Allow\n    protocol: TCP\n    destination:\n      ports: [{allow_ports}]\n---\n\
         apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  \
         name: deny-8080\nspec:\n  order: {deny_order}\n  selector: \"{deny_selector}\"\n  \
         ingress:\n  - action: Deny\n    protocol: TCP\n    destination:\n      ports: [8080]\n"
    )
}

fn allow_9090(selector: &str) -> String {
    allow_9090_from(selector, "")
}

/// `allow_9090` with the rule's `source` lines (`source` empty: from anywhere).
fn allow_9090_from(selector: &str, source: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  \
         name: allow-9090\nspec:\n  order: 300\n  selector: \"{selector}\"\n  ingress:\n  \
         - action: Allow\n    protocol: TCP\n{source}    destination:\n      ports: [9090]\n"
    )
}

/// The network set `trusted` (label `trusted: "yes"`) holding `net`.
fn trusted_set(net: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: trusted\n  \
         labels: {{trusted: \"yes\"}}\nspec:\n  nets: [\"{net}\"]\n"
    )
}

/// A daemon on a host with two endpoints: eth0 (peer behind it) and eth1 (other behind it).
struct TwoEndpoints {
    pair: Pair,
    other: Netns,
    work: Workdir,
    daemon: Daemon,
    generation: u64,
    _servers: Vec<Server>,
}

impl TwoEndpoints {
    fn start() -> TwoEndpoints {
        let pair = Pair::new("memo");
        let other = Netns::new("memo-o");
        veth(&pair.host, "eth1", &other, "eth1");
        pair.host.addr("eth1", &format!("{HOST_ETH1}/24"));
        other.addr("eth1", &format!("{OTHER_ETH1}/24"));
        let servers = PORTS
            .iter()
            .map(|&port| tcp_server(&pair.host, sock("0.0.0.0", port)))
            .collect();
        let work = Workdir::new();
        work.write_policy_files(&[
            (
                "00-felix.yaml".into(),
                felix_configuration(
                    "  failsafeInboundHostPorts: []\n  failsafeOutboundHostPorts: []\n",
                ),
            ),
            (
                "10-h-eth0.yaml".into(),
                host_endpoint("h-eth0", "eth0", "{role: web, zone: a}", ""),
            ),
            (
                "11-h-eth1.yaml".into(),
                h_eth1("{role: web, zone: b}", "open-7070"),
            ),
            ("12-open-7070.yaml".into(), PROFILE_7070.into()),
            ("20-tier-security.yaml".into(), tier_security("Pass")),
            ("21-security-guard.yaml".into(), SECURITY_GUARD.into()),
            (
                "30-8080.yaml".into(),
                policies_8080(100, "8080", 200, "role == 'web'"),
            ),
            ("31-allow-9090.yaml".into(), allow_9090("has(role)")),
        ]);
        let daemon = Daemon::ready(&pair.host, &work);
        let mut memo = TwoEndpoints {
            pair,
            other,
            work,
            daemon,
            generation: 0,
            _servers: servers,
        };
        memo.generation = memo.applied("the first apply");
        memo
    }

    /// The generation status.json reports once it is past `self.generation`, with state ok.
    fn applied(&self, what: &str) -> u64 {
        let generation = || self.daemon.status()["policy"]["generation"].as_u64();
        let past = |g: Option<u64>| g.is_some_and(|g| g > self.generation);
        assert!(
            // The notify socket is never read after READY: its queue fills after a few
            // generations, and the daemon must go on (a notification it cannot send is lost).
            netns::eventually(WITHIN, || past(generation())),
            "{what}: no generation after {} within {WITHIN:?}:\n{}",
            self.generation,
            self.daemon.log_text()
        );
        let status = self.daemon.status();
        assert_eq!(status["state"], "ok", "{what}: {status:#}");
        generation().unwrap_or_default()
    }

    /// Write `file` as `yaml`, wait for the daemon to apply it, then require that a fresh render
    /// finds nothing to change and that exactly the `open` (interface, port) pairs admit TCP.
    fn edit(&mut self, what: &str, file: &str, yaml: &str, open: &[(&str, u16)]) {
        put(&self.work.policy_dir(), file, yaml);
        self.generation = self.applied(what);
        self.expect(what, open);
    }

    /// The kernel as a fresh render has it, and real packets agree with `open`.
    fn expect(&self, what: &str, open: &[(&str, u16)]) {
        let diff = netns::hostfw(&self.pair.host, &self.work, NODE, BACKEND, &["diff"]);
        assert_eq!(
            diff.code, 0,
            "{what}: the daemon's kernel state differs from a fresh render:\n{diff:?}"
        );
        let probes: Vec<(&str, &Netns, &str, u16)> = PORTS
            .iter()
            .flat_map(|&port| {
                [
                    ("eth0", &self.pair.peer, HOST4, port),
                    ("eth1", &self.other, HOST_ETH1, port),
                ]
            })
            .collect();
        // Side by side: a refused probe costs a whole probe timeout.
        let seen: Vec<bool> = std::thread::scope(|scope| {
            let running: Vec<_> = probes
                .iter()
                .map(|&(_, from, to, port)| scope.spawn(move || tcp_ok(from, None, sock(to, port))))
                .collect();
            running
                .into_iter()
                .map(|probe| {
                    probe
                        .join()
                        .unwrap_or_else(|e| std::panic::resume_unwind(e))
                })
                .collect()
        });
        let wrong: Vec<String> = probes
            .iter()
            .zip(&seen)
            .filter(|((iface, _, _, port), &admitted)| admitted != open.contains(&(*iface, *port)))
            .map(|((iface, _, _, port), &admitted)| {
                format!(
                    "{iface}:{port} {}",
                    if admitted { "admitted" } else { "refused" }
                )
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{what}: unexpected verdicts: {}\n(diff said: {diff:?})",
            wrong.join(", ")
        );
    }
}

/// Each edit changes the inputs of at least one endpoint chain, except (f), which changes only
/// a policy's rules (the memo keeps every endpoint body), and (h) to (j). (b) changes only the
/// order of names (the selectors, read in order, stay the same) and (g) only a selector (the
/// names stay the same), so each catches a memo key that leaves out what it changes. (j)
/// changes only the members of a set that an unchanged policy's rule selects: its chain is
/// taken from the memo, and the set must still follow.
#[test]
fn endpoint_edits_under_the_daemon_leave_the_kernel_as_a_fresh_render_has_it() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut m = TwoEndpoints::start();
    m.expect(
        "the first apply",
        &[
            ("eth0", 8080),
            ("eth0", 9090),
            ("eth1", 8080),
            ("eth1", 9090),
        ],
    );

    m.edit(
        "(a) allow-9090 stops selecting eth0",
        "31-allow-9090.yaml",
        &allow_9090("zone == 'b'"),
        &[("eth0", 8080), ("eth1", 8080), ("eth1", 9090)],
    );
    m.edit(
        "(b) the deny of 8080 moves before the allow",
        "30-8080.yaml",
        &policies_8080(200, "8080", 100, "role == 'web'"),
        &[("eth1", 9090)],
    );
    // No policy of the default tier selects eth1 any more; security passes it to the profile.
    m.edit(
        "(c) eth1 relabelled: only security.guard selects it",
        "11-h-eth1.yaml",
        &h_eth1("{role: db}", "open-7070"),
        &[("eth1", 7070)],
    );
    m.edit(
        "(d) eth1's profile allows everything",
        "11-h-eth1.yaml",
        &h_eth1("{role: db}", "projectcalico-default-allow"),
        &PORTS.map(|port| ("eth1", port)),
    );
    m.edit(
        "(e) the security tier ends in Deny",
        "20-tier-security.yaml",
        &tier_security("Deny"),
        &[],
    );
    m.edit(
        "(f) allow-8080 also allows 5050 (its rules only)",
        "30-8080.yaml",
        &policies_8080(200, "8080, 5050", 100, "role == 'web'"),
        &[("eth0", 5050)],
    );
    // eth0 keeps the same policies in the same order, but they no longer form one group.
    m.edit(
        "(g) deny-8080's selector differs from allow-8080's",
        "30-8080.yaml",
        &policies_8080(200, "8080, 5050", 100, "has(zone)"),
        &[("eth0", 5050)],
    );
    m.edit(
        "(h) a network set nothing selects yet",
        "40-trusted.yaml",
        &trusted_set("203.0.113.99/32"),
        &[("eth0", 5050)],
    );
    let from_trusted = "    source:\n      selector: \"trusted == 'yes'\"\n";
    m.edit(
        "(i) allow-9090 selects eth0 again, from the trusted set only",
        "31-allow-9090.yaml",
        &allow_9090_from("has(role)", from_trusted),
        &[("eth0", 5050)],
    );
    m.edit(
        "(j) only the trusted set's members change: eth0's peer joins it",
        "40-trusted.yaml",
        &trusted_set(&format!("{}/32", netns::PEER4)),
        &[("eth0", 5050), ("eth0", 9090)],
    );
}
