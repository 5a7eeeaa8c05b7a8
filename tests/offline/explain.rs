//! `explain` over rendered rulesets: YAML → load → resolve → render → one packet. Each expected
//! verdict and deciding rule is reasoned from Felix's semantics (felix/rules/static.go,
//! felix/rules/policy.go, felix/rules/endpoints.go): conntrack first, failsafe before policy,
//! tiers end in deny, no policy + no profile = deny, forwarded traffic allowed without forward
//! policy, untracked allow accepted in raw.

use hostfw::explain::{self, ConnState, Decision, Direction, Packet, RuleVerdict, Verdict};
use hostfw::policy::load_sources;
use hostfw::resolve::{resolve, HostInterfaces, NodeView};
use hostfw::ruleset::Family;
use hostfw::source::NamedText;
use std::net::IpAddr;

const NODE: &str = "host-a";

fn view(yaml: &str) -> NodeView {
    let loaded = load_sources(&[NamedText {
        name: "t.yaml".into(),
        text: yaml.into(),
    }]);
    let set = loaded
        .set
        .unwrap_or_else(|| panic!("invalid test policy: {:?}", loaded.diagnostics));
    let ifaces: HostInterfaces = [
        ("eth0", &["198.51.100.1", "2001:db8::1"][..]),
        ("eth1", &["203.0.113.1"]),
        ("lo", &["127.0.0.1"]),
    ]
    .into_iter()
    .map(|(name, ips)| {
        let ips = ips.iter().map(|ip| ip.parse().expect("test address"));
        (name.to_string(), ips.collect())
    })
    .collect();
    resolve(&set, NODE, &ifaces)
}

fn hep(name: &str, iface: &str, labels: &str) -> String {
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: {name}\n  \
         labels: {labels}\nspec:\n  interfaceName: \"{iface}\"\n  node: {NODE}\n"
    )
}

/// A TCP/UDP/ICMP packet builder with sensible defaults (new flow, ephemeral source port).
#[derive(Clone)]
struct P(Packet);

impl P {
    fn new(direction: Direction, iface: &str, src: &str, dst: &str, proto: u8) -> P {
        let ports = matches!(proto, 6 | 17);
        P(Packet {
            direction,
            iface: iface.into(),
            out_iface: None,
            src: src.parse::<IpAddr>().unwrap(),
            dst: dst.parse::<IpAddr>().unwrap(),
            proto,
            sport: ports.then_some(40000),
            dport: None,
            icmp_type: None,
            icmp_code: None,
            state: ConnState::New,
            dnat: false,
        })
    }
    fn tcp_in(src: &str, dport: u16) -> P {
        P::new(Direction::Ingress, "eth0", src, "198.51.100.1", 6).dport(dport)
    }
    fn dport(mut self, p: u16) -> P {
        self.0.dport = Some(p);
        self
    }
    fn state(mut self, s: ConnState) -> P {
        self.0.state = s;
        self
    }
    fn iface(mut self, i: &str) -> P {
        self.0.iface = i.into();
        self
    }
    fn out(mut self, o: &str) -> P {
        self.0.out_iface = Some(o.into());
        self
    }
    fn icmp(mut self, t: u8, c: u8) -> P {
        self.0.icmp_type = Some(t);
        self.0.icmp_code = Some(c);
        self
    }
}

fn run(view: &NodeView, p: &P) -> explain::Explanation {
    let family = if p.0.src.is_ipv6() {
        Family::V6
    } else {
        Family::V4
    };
    let (rs, provenance) = hostfw::render::render_with_provenance(view, family).expect("render");
    let marks =
        hostfw::render::marks::Marks::allocate(view.config.iptables_mark_mask).expect("mark mask");
    let ctx = explain::Context::from_provenance(marks, provenance);
    explain::explain(&rs, &ctx, &p.0)
}

fn policy(name: &str, rule: Option<usize>, action: RuleVerdict, direction: &str) -> Decision {
    Decision::Policy {
        policy: name.into(),
        tier: "default".into(),
        direction: direction.into(),
        rule,
        action,
    }
}

/// Check a table of (packet, verdict, decision) rows, reporting every wrong row at once.
fn check(view: &NodeView, rows: &[(&str, P, Verdict, Decision)]) {
    let mut bad = Vec::new();
    for (what, p, verdict, decision) in rows {
        let e = run(view, p);
        if e.verdict != *verdict || e.decision != *decision {
            bad.push(format!(
                "{what}: expected {verdict:?} by {decision:?}\n  got {:?} by {:?}\n{e}",
                e.verdict, e.decision,
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

const WEB: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: web
spec:
  selector: "role == 'web'"
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source:
      nets: ["198.51.100.0/28"]
    destination:
      ports: [8080]
  - action: Deny
    protocol: TCP
    destination:
      ports: [9090]
  - action: Allow
    protocol: UDP
    source:
      nets: ["198.51.100.64/28", "203.0.113.0/24"]
    destination:
      ports: [5353]
  - action: Allow
    protocol: ICMP
    icmp: {type: 8, code: 0}
  - action: Allow
    protocol: ICMPv6
    icmp: {type: 128}
  - action: Allow
    protocol: TCP
    source:
      selector: "trust == 'high'"
    destination:
      ports: [7000]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: partners
  labels: {trust: high}
spec:
  nets: ["203.0.113.0/25", "2001:db8:77::/48"]
"#;

#[test]
fn ingress_policy_rules_failsafe_conntrack_and_defaults() {
    let v = view(&format!("{WEB}{}", hep("a-eth0", "eth0", "{role: web}")));
    use Verdict::*;
    let web = |i, a| policy("web", Some(i), a, "ingress");
    let udp = |src: &str| P::new(Direction::Ingress, "eth0", src, "198.51.100.1", 17).dport(5353);
    let icmp = |src: &str, dst: &str, proto, t, c| {
        P::new(Direction::Ingress, "eth0", src, dst, proto).icmp(t, c)
    };
    check(
        &v,
        &[
            (
                "8080 from the allowed net",
                P::tcp_in("198.51.100.2", 8080),
                Accept,
                web(0, RuleVerdict::Allow),
            ),
            (
                "8080 from outside the net: end of tier",
                P::tcp_in("198.51.100.100", 8080),
                Drop,
                Decision::EndOfTier {
                    tier: "default".into(),
                    endpoint: "a-eth0 (eth0)".into(),
                },
            ),
            (
                "9090 denied by rule 1",
                P::tcp_in("198.51.100.2", 9090),
                Drop,
                web(1, RuleVerdict::Deny),
            ),
            // Two source nets: a match block (scratch marks) ORs them.
            (
                "udp from the second net",
                udp("203.0.113.9"),
                Accept,
                web(2, RuleVerdict::Allow),
            ),
            (
                "udp from the first net",
                udp("198.51.100.70"),
                Accept,
                web(2, RuleVerdict::Allow),
            ),
            (
                "udp from neither net",
                udp("198.51.100.2"),
                Drop,
                Decision::EndOfTier {
                    tier: "default".into(),
                    endpoint: "a-eth0 (eth0)".into(),
                },
            ),
            (
                "echo request",
                icmp("198.51.100.2", "198.51.100.1", 1, 8, 0),
                Accept,
                web(3, RuleVerdict::Allow),
            ),
            (
                "echo request code 1 does not match type 8 code 0",
                icmp("198.51.100.2", "198.51.100.1", 1, 8, 1),
                Drop,
                Decision::EndOfTier {
                    tier: "default".into(),
                    endpoint: "a-eth0 (eth0)".into(),
                },
            ),
            // The ICMP rule is IPv4 only; the ICMPv6 one is rule 4 (rule numbering counts the
            // API list, not what the family renders).
            (
                "ICMPv6 echo",
                icmp("2001:db8::2", "2001:db8::1", 58, 128, 0),
                Accept,
                web(4, RuleVerdict::Allow),
            ),
            // Selector on a GlobalNetworkSet: an ipset.
            (
                "7000 from the partner set",
                P::tcp_in("203.0.113.5", 7000),
                Accept,
                web(5, RuleVerdict::Allow),
            ),
            (
                "7000 from outside the set (203.0.113.200 is in /24 but not /25)",
                P::tcp_in("203.0.113.200", 7000),
                Drop,
                Decision::EndOfTier {
                    tier: "default".into(),
                    endpoint: "a-eth0 (eth0)".into(),
                },
            ),
            (
                "ssh from anywhere: failsafe",
                P::tcp_in("192.0.2.77", 22),
                Accept,
                Decision::Failsafe {
                    direction: "inbound".into(),
                    entry: "tcp:22".into(),
                },
            ),
            (
                "established flow",
                P::tcp_in("192.0.2.77", 9999).state(ConnState::Established),
                Accept,
                Decision::Conntrack {
                    state: "established".into(),
                },
            ),
            (
                "invalid packet",
                P::tcp_in("198.51.100.2", 8080).state(ConnState::Invalid),
                Drop,
                Decision::Conntrack {
                    state: "invalid".into(),
                },
            ),
            (
                "another interface is not a host endpoint",
                P::tcp_in("203.0.113.2", 9090).iface("eth1"),
                Accept,
                Decision::NotHostEndpoint,
            ),
        ],
    );
}

#[test]
fn egress_without_policy_is_denied_except_failsafe() {
    let v = view(&format!("{WEB}{}", hep("a-eth0", "eth0", "{role: web}")));
    let out = |proto, dport| {
        P::new(
            Direction::Egress,
            "eth0",
            "198.51.100.1",
            "198.51.100.2",
            proto,
        )
        .dport(dport)
    };
    check(
        &v,
        &[
            (
                "https out: the endpoint has no egress policy and no profile",
                out(6, 443),
                Verdict::Drop,
                Decision::NoPolicy {
                    endpoint: "a-eth0 (eth0)".into(),
                },
            ),
            (
                "dns out: failsafe",
                out(17, 53),
                Verdict::Accept,
                Decision::Failsafe {
                    direction: "outbound".into(),
                    entry: "udp:53".into(),
                },
            ),
        ],
    );
}

#[test]
fn forward_defaults_and_apply_on_forward() {
    let yaml = |aof: bool| {
        format!(
            r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: edge
spec:
  selector: "role == 'edge'"
  applyOnForward: {aof}
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80]
{}"#,
            hep("a-eth0", "eth0", "{role: edge}")
        )
    };
    let fwd = |dport| {
        P::new(Direction::Forward, "eth0", "198.51.100.2", "203.0.113.2", 6)
            .out("eth1")
            .dport(dport)
    };
    check(
        &view(&yaml(false)),
        &[(
            "no forward policy: allowed by default",
            fwd(8080),
            Verdict::Accept,
            Decision::ForwardDefault {
                endpoint: "a-eth0 (eth0)".into(),
            },
        )],
    );
    check(
        &view(&yaml(true)),
        &[
            (
                "applyOnForward policy allows 80",
                fwd(80),
                Verdict::Accept,
                policy("edge", Some(0), RuleVerdict::Allow, "ingress"),
            ),
            (
                "applyOnForward policy: 8080 ends the tier (no failsafe on forward)",
                fwd(8080),
                Verdict::Drop,
                Decision::EndOfTier {
                    tier: "default".into(),
                    endpoint: "a-eth0 (eth0)".into(),
                },
            ),
            (
                "forward between interfaces that are no endpoints",
                P::new(Direction::Forward, "eth1", "203.0.113.2", "192.0.2.1", 6)
                    .out("eth2")
                    .dport(8080),
                Verdict::Accept,
                Decision::NotHostEndpoint,
            ),
        ],
    );
}

#[test]
fn untracked_pre_dnat_tiers_and_star() {
    let yaml = format!(
        r#"apiVersion: projectcalico.org/v3
kind: Tier
metadata: {{name: security}}
spec: {{order: 10}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: security.pass-web
spec:
  tier: security
  selector: all()
  ingress:
  - action: Pass
    protocol: TCP
    destination:
      ports: [80]
  - action: Deny
    protocol: TCP
    destination:
      ports: [81]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: untracked
spec:
  selector: all()
  doNotTrack: true
  applyOnForward: true
  ingress:
  - action: Allow
    protocol: UDP
    destination:
      ports: [7070]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: pre
spec:
  selector: all()
  preDNAT: true
  applyOnForward: true
  ingress:
  - action: Deny
    protocol: TCP
    destination:
      ports: [6000]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: web
spec:
  selector: all()
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80, 81]
  egress:
  - action: Allow
{}{}"#,
        hep("a-eth0", "eth0", "{x: z}"),
        hep("a-any", "*", "{x: z}")
    );
    let v = view(&yaml);
    check(
        &v,
        &[
            (
                "passed by the security tier, allowed by the default tier",
                P::tcp_in("198.51.100.2", 80),
                Verdict::Accept,
                policy("web", Some(0), RuleVerdict::Allow, "ingress"),
            ),
            (
                "denied in the security tier before the default tier allows it",
                P::tcp_in("198.51.100.2", 81),
                Verdict::Drop,
                Decision::Policy {
                    policy: "security.pass-web".into(),
                    tier: "security".into(),
                    direction: "ingress".into(),
                    rule: Some(1),
                    action: RuleVerdict::Deny,
                },
            ),
            (
                "untracked allow decides in raw",
                P::new(
                    Direction::Ingress,
                    "eth0",
                    "198.51.100.2",
                    "198.51.100.1",
                    17,
                )
                .dport(7070),
                Verdict::Accept,
                policy("untracked", Some(0), RuleVerdict::Allow, "ingress"),
            ),
            (
                "preDNAT deny in mangle",
                P::tcp_in("198.51.100.2", 6000),
                Verdict::Drop,
                policy("pre", Some(0), RuleVerdict::Deny, "ingress"),
            ),
            (
                "the * endpoint covers other interfaces",
                P::tcp_in("203.0.113.2", 80).iface("eth1"),
                Verdict::Accept,
                policy("web", Some(0), RuleVerdict::Allow, "ingress"),
            ),
            (
                "egress allowed by the web policy on eth1 (* endpoint)",
                P::new(Direction::Egress, "eth1", "203.0.113.1", "203.0.113.2", 6).dport(443),
                Verdict::Accept,
                policy("web", Some(0), RuleVerdict::Allow, "egress"),
            ),
        ],
    );
}

#[test]
fn json_and_text_name_the_policy_and_the_path() {
    let v = view(&format!("{WEB}{}", hep("a-eth0", "eth0", "{role: web}")));
    let e = run(&v, &P::tcp_in("198.51.100.2", 9090));
    let text = e.to_string();
    assert!(text.contains("verdict:  DROP"), "{text}");
    assert!(
        text.contains("GlobalNetworkPolicy web (tier default), ingress rule 1: Deny"),
        "{text}"
    );
    assert!(text.contains("cali-pi-gnp/web"), "{text}");
    assert!(text.contains("filter INPUT: DROP"), "{text}");
    let json: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(json["verdict"], "DROP");
    assert_eq!(json["decision"]["kind"], "policy");
    assert_eq!(json["decision"]["policy"], "web");
    assert_eq!(json["decision"]["rule"], 1);
    assert_eq!(json["endpoint"], "a-eth0 (eth0)");
    let filter = json["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["table"] == "filter")
        .unwrap();
    assert!(filter["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["owner"] == "GlobalNetworkPolicy web ingress rule 1"));
}

#[test]
fn allow_action_return_still_names_the_policy() {
    let yaml = format!(
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {{name: default}}\n\
         spec:\n  iptablesFilterAllowAction: Return\n  iptablesFilterDenyAction: Reject\n---\n{WEB}{}",
        hep("a-eth0", "eth0", "{role: web}")
    );
    let v = view(&yaml);
    check(
        &v,
        &[
            (
                "allowed with RETURN verdicts: the kernel policy accepts, the policy decided",
                P::tcp_in("198.51.100.2", 8080),
                Verdict::Accept,
                policy("web", Some(0), RuleVerdict::Allow, "ingress"),
            ),
            (
                "deny action REJECT",
                P::tcp_in("198.51.100.2", 9090),
                Verdict::Reject,
                policy("web", Some(1), RuleVerdict::Deny, "ingress"),
            ),
            (
                "end of tier with REJECT",
                P::tcp_in("198.51.100.100", 8080),
                Verdict::Reject,
                Decision::EndOfTier {
                    tier: "default".into(),
                    endpoint: "a-eth0 (eth0)".into(),
                },
            ),
        ],
    );
}
