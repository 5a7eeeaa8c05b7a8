//! Benchmark (harness = false): render a large NodeView in both families, with provenance —
//! the L scale of docs/performance.md: 10,000 GlobalNetworkPolicies with 100,000 rules and 20
//! endpoints in under 1 s. Two shapes:
//! "typical", each endpoint governed by a quarter of the policies (each policy selects 5 of the
//! 20 endpoints), and "worst", every policy on every endpoint (1.5 million iptables rules per
//! family). Prints wall and CPU time (the build machine is shared, so wall time includes
//! waiting for a core); run with `cargo bench --bench render`. Without `--bench` (e.g. `cargo
//! test --all-targets`) it runs at 1/100 scale as a smoke test.

use hostfw::model::selector::Selector;
use hostfw::model::*;
use hostfw::render::render_with_provenance;
use hostfw::resolve::{
    ActiveEndpoint, EffectiveConfig, EndpointPolicies, NodeView, SelectableEndpoint,
    SelectableNetworkSet, SelectorSources, TierPolicies,
};
use hostfw::ruleset::Family;
use std::collections::BTreeMap;
use std::time::Instant;

const POLICIES: usize = 10_000;
const RULES_PER_POLICY: usize = 10;
const ENDPOINTS: usize = 20;

fn meta(name: String) -> Meta {
    Meta {
        name,
        labels: Labels::new(),
        annotations: Labels::new(),
        origin: Origin {
            file: "bench.yaml".into(),
            line: 1,
            column: 1,
        },
    }
}

/// Ten rules per policy: nets (v4 and v6), ports and ranges, selectors, ICMP, deny and log.
fn policy(i: usize) -> GlobalNetworkPolicy {
    let mut ingress = Vec::new();
    let mut egress = Vec::new();
    for r in 0..RULES_PER_POLICY / 2 {
        let mut rule = Rule::matching_all(RuleAction::Allow);
        rule.protocol = Some(Protocol::Tcp);
        let port = (1000 + (i * 7 + r) % 60000) as u16;
        rule.source.nets = vec![
            format!("198.51.{}.0/24", (i + r) % 256).parse().unwrap(),
            format!("2001:db8:{:x}::/48", (i + r) % 4096)
                .parse()
                .unwrap(),
        ]
        .into();
        rule.destination.ports = vec![Port::Single(port), Port::Range(port + 1, port + 10)].into();
        ingress.push(rule);
    }
    for r in 0..RULES_PER_POLICY / 2 {
        let rule = match r {
            0 => {
                let mut rule = Rule::matching_all(RuleAction::Allow);
                rule.protocol = Some(Protocol::Icmp);
                rule.icmp = Some(IcmpMatch {
                    icmp_type: 8,
                    code: None,
                });
                rule
            }
            1 => Rule::matching_all(RuleAction::Log),
            _ => {
                let mut rule = Rule::matching_all(RuleAction::Deny);
                rule.protocol = Some(Protocol::Udp);
                rule.destination.selector =
                    Some(Selector::parse(&format!("role == 'r{}'", (i + r) % 25)).unwrap());
                rule.destination.ports = vec![Port::Single(2000 + r as u16)].into();
                rule
            }
        };
        egress.push(rule);
    }
    GlobalNetworkPolicy {
        meta: meta(format!("policy-{i:05}")),
        tier: DEFAULT_TIER.into(),
        order: Some(i as f64),
        selector: Selector::all(),
        types: PolicyTypes {
            ingress: true,
            egress: true,
        },
        ingress,
        egress,
        do_not_track: false,
        pre_dnat: false,
        apply_on_forward: i.is_multiple_of(10),
        assume_needed_on_every_node: false,
    }
}

fn config() -> EffectiveConfig {
    EffectiveConfig {
        failsafe_inbound: vec![],
        failsafe_outbound: vec![],
        ..EffectiveConfig::default()
    }
}

/// `share`: an endpoint is governed by policy `i` when `i % share == e % share`.
fn view(policies: usize, share: usize) -> NodeView {
    let names: Vec<String> = (0..policies).map(|i| format!("policy-{i:05}")).collect();
    let tiers = |e: usize, step: usize| {
        vec![TierPolicies {
            tier: DEFAULT_TIER.into(),
            default_action: TierAction::Deny,
            policies: names
                .iter()
                .enumerate()
                .filter(|(i, _)| i % share == e % share && i % step == 0)
                .map(|(_, n)| n.as_str().into())
                .collect(),
        }]
    };
    let endpoints = (0..ENDPOINTS)
        .map(|e| ActiveEndpoint {
            hep: format!("host-eth{e}"),
            interface: InterfaceName::Named(format!("eth{e}")),
            labels: Labels::new(),
            expected_ips: vec![],
            profiles: vec![],
            ports: vec![],
            policies: EndpointPolicies {
                ingress: tiers(e, 1),
                egress: tiers(e, 1),
                forward_ingress: tiers(e, 10),
                forward_egress: tiers(e, 10),
                ..Default::default()
            },
        })
        .collect();
    let selectables = (0..1000)
        .map(|n| SelectableEndpoint {
            name: format!("hep-{n}"),
            labels: [("role".to_string(), format!("r{}", n % 25))]
                .into_iter()
                .collect(),
            expected_ips: vec![format!("198.51.100.{}", n % 250).parse().unwrap()],
            ports: vec![],
        })
        .collect();
    NodeView {
        node: "bench".into(),
        config: config(),
        endpoints,
        policies: (0..policies)
            .map(|i| (names[i].clone(), policy(i).into()))
            .collect::<BTreeMap<_, _>>(),
        profiles: BTreeMap::new(),
        selector_sources: SelectorSources {
            endpoints: selectables,
            network_sets: vec![SelectableNetworkSet {
                name: "world".into(),
                labels: Labels::new(),
                nets: vec!["0.0.0.0/0".parse().unwrap()],
            }],
        },
        warnings: vec![],
    }
}

/// Nanoseconds this thread has spent on a CPU (scheduler statistics).
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn rules(rs: &hostfw::ruleset::Ruleset) -> usize {
    rs.tables
        .iter()
        .flat_map(|t| t.chains.values())
        .map(|c| c.rules.len())
        .sum()
}

fn run(label: &str, policies: usize, share: usize) {
    let v = view(policies, share);
    let cpu0 = cpu_ns();
    let start = Instant::now();
    // The provenance is kept alive with the rulesets so peak memory includes it.
    let (v4, _v4_provenance) = render_with_provenance(&v, Family::V4).expect("render v4");
    let (v6, _v6_provenance) = render_with_provenance(&v, Family::V6).expect("render v6");
    let wall = start.elapsed();
    let cpu = cpu_ns().zip(cpu0).map(|(b, a)| (b - a) as f64 / 1e6);
    println!(
        "render {label}: {policies} policies, {} API rules, {ENDPOINTS} endpoints -> v4 {} rules / {} ipsets, v6 {} rules / {} ipsets; both families: wall {:.1} ms, cpu {}",
        policies * RULES_PER_POLICY,
        rules(&v4),
        v4.ipsets.len(),
        rules(&v6),
        v6.ipsets.len(),
        wall.as_secs_f64() * 1000.0,
        cpu.map_or("n/a".to_string(), |ms| format!("{ms:.1} ms")),
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let policies = if full { POLICIES } else { POLICIES / 100 };
    run("typical", policies, 4);
    run("worst", policies, 1);
}
