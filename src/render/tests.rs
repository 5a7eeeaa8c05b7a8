//! Whole-render unit tests on hand-built NodeViews: the seed sample, table contents,
//! ipVersion filtering, match blocks and provenance. Expected rules are written from Felix's
//! layout (`docs/felix-layout.md`; Felix `felix/rules/static.go`, `felix/rules/endpoints.go`,
//! `felix/rules/policy.go`), not copied from output.

use super::*;
use crate::model::selector::Selector;
use crate::model::*;
use crate::resolve::{
    ActiveEndpoint, EffectiveConfig, EndpointPolicies, NodeView, SelectableEndpoint,
    SelectableNetworkSet, SelectorSources, TierPolicies,
};
use crate::ruleset::{HookPosition, IpsetType, PortSpec, Rule, Rules, SetDirection};
use std::sync::Arc;

fn meta(name: &str) -> Meta {
    Meta::for_test(name)
}

fn fs(protocol: FailsafeProtocol, port: u16) -> FailsafePort {
    FailsafePort {
        protocol,
        port,
        net: None,
    }
}

pub(super) fn config() -> EffectiveConfig {
    use FailsafeProtocol::*;
    // Felix's defaults (resolve's built-ins), with a short failsafe list to keep vectors small.
    EffectiveConfig {
        failsafe_inbound: vec![fs(Tcp, 22), fs(Udp, 68)],
        failsafe_outbound: vec![fs(Udp, 53), fs(Udp, 67)],
        ..EffectiveConfig::default()
    }
}

pub(super) fn api_rule(action: RuleAction) -> crate::model::Rule {
    crate::model::Rule::matching_all(action)
}

pub(super) fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

fn gnp(
    name: &str,
    ingress: Vec<crate::model::Rule>,
    egress: Vec<crate::model::Rule>,
) -> GlobalNetworkPolicy {
    GlobalNetworkPolicy {
        meta: meta(name),
        tier: DEFAULT_TIER.into(),
        order: Some(100.0),
        selector: Selector::parse("role == 'k8s-worker'").unwrap(),
        types: PolicyTypes {
            ingress: true,
            egress: true,
        },
        ingress,
        egress,
        do_not_track: false,
        pre_dnat: false,
        apply_on_forward: false,
        assume_needed_on_every_node: false,
    }
}

fn tier(policies: &[&str]) -> Vec<TierPolicies> {
    vec![TierPolicies {
        tier: DEFAULT_TIER.into(),
        default_action: TierAction::Deny,
        policies: policies.iter().map(|&s| s.into()).collect(),
    }]
}

/// The seed example (tests/golden/render/01-seed-k8s-worker): k8s-worker-host on eth0.
pub(super) fn seed_view() -> NodeView {
    let mut ssh = api_rule(RuleAction::Allow);
    ssh.protocol = Some(Protocol::Tcp);
    ssh.source.nets = vec![net("192.168.100.0/24")].into();
    ssh.destination.ports = vec![Port::Single(22)].into();
    let mut icmp = api_rule(RuleAction::Allow);
    icmp.protocol = Some(Protocol::Icmp);
    let mut kubelet = api_rule(RuleAction::Allow);
    kubelet.protocol = Some(Protocol::Tcp);
    kubelet.destination.ports = vec![Port::Single(10250)].into();
    let mut etcd = api_rule(RuleAction::Allow);
    etcd.protocol = Some(Protocol::Tcp);
    etcd.destination.nets = vec![net("10.0.1.0/24")].into();
    etcd.destination.ports = vec![Port::Single(2379)].into();
    let mut dns = api_rule(RuleAction::Allow);
    dns.protocol = Some(Protocol::Udp);
    dns.destination.ports = vec![Port::Single(53), Port::Single(67)].into();
    let policy = gnp("k8s-worker-host", vec![ssh, icmp, kubelet], vec![etcd, dns]);
    NodeView {
        node: "node1".into(),
        config: config(),
        endpoints: vec![ActiveEndpoint {
            hep: "node1-eth0".into(),
            interface: InterfaceName::Named("eth0".into()),
            labels: Labels::new(),
            expected_ips: vec!["10.0.0.21".parse().unwrap()],
            profiles: vec![],
            ports: vec![],
            policies: EndpointPolicies {
                ingress: tier(&["k8s-worker-host"]),
                egress: tier(&["k8s-worker-host"]),
                ..Default::default()
            },
        }],
        policies: [("k8s-worker-host".to_string(), policy.into())]
            .into_iter()
            .collect(),
        profiles: BTreeMap::new(),
        selector_sources: SelectorSources::default(),
        warnings: vec![],
    }
}

fn table(rs: &Ruleset, name: TableName) -> &Table {
    rs.tables.iter().find(|t| t.name == name).unwrap()
}

fn chain<'a>(rs: &'a Ruleset, t: TableName, name: &str) -> &'a [Rule] {
    &table(rs, t)
        .chains
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing in {t:?}"))
        .rules
}

fn mark(value: u32, mask: u32) -> Match {
    Match::Mark {
        negated: false,
        value,
        mask,
    }
}

fn ct(s: &str) -> Match {
    Match::ConntrackState {
        negated: false,
        states: s.into(),
    }
}

fn r(matches: Vec<Match>, action: Action, comments: &[&str]) -> Rule {
    Rule {
        matches: matches.into(),
        action,
        comments: comments.iter().map(|&s| s.into()).collect(),
    }
}

const A: u32 = 0x10000;
const P: u32 = 0x20000;

#[test]
fn seed_filter_from_host_chain_matches_reference() {
    let rs = render(&seed_view(), Family::V4).unwrap();
    let expected = vec![
        r(vec![ct("RELATED,ESTABLISHED")], Action::Accept, &[]),
        r(vec![ct("INVALID")], Action::Drop, &[]),
        r(vec![], Action::Jump("cali-failsafe-in".into()), &[]),
        r(vec![], clear_mark(A | P), &[]),
        r(vec![], clear_mark(P), &["Start of tier default"]),
        r(
            vec![mark(0, P)],
            Action::Jump("cali-pi-gnp/k8s-worker-host".into()),
            &[],
        ),
        r(
            vec![mark(A, A)],
            Action::Return,
            &["Return if policy accepted"],
        ),
        r(
            vec![mark(0, P)],
            Action::Drop,
            &["End of tier default. Drop if no policies passed packet"],
        ),
        r(vec![], Action::Drop, &["Drop if no profiles matched"]),
    ];
    assert_eq!(chain(&rs, TableName::Filter, "cali-fh-eth0"), expected);
}

#[test]
fn seed_mangle_to_host_chain_returns_with_accept_bit() {
    let rs = render(&seed_view(), Family::V4).unwrap();
    let th = chain(&rs, TableName::Mangle, "cali-th-eth0");
    assert_eq!(th[0], r(vec![ct("RELATED,ESTABLISHED")], set_mark(A), &[]));
    assert_eq!(
        th[1],
        r(vec![ct("RELATED,ESTABLISHED")], Action::Return, &[])
    );
    assert_eq!(
        th[3],
        r(vec![], Action::Jump("cali-failsafe-out".into()), &[])
    );
}

#[test]
fn seed_policy_chain_v4_and_v6() {
    let rs = render(&seed_view(), Family::V4).unwrap();
    let pi = chain(&rs, TableName::Filter, "cali-pi-gnp/k8s-worker-host");
    let tcp = Match::Protocol {
        negated: false,
        name: "tcp".into(),
    };
    assert_eq!(
        pi[0],
        r(
            vec![
                tcp.clone(),
                Match::Source {
                    negated: false,
                    net: net("192.168.100.0/24")
                },
                Match::DestinationPorts {
                    negated: false,
                    ports: vec![PortSpec::Single(22)].into()
                }
            ],
            set_mark(A),
            &["GlobalNetworkPolicy k8s-worker-host ingress"]
        )
    );
    assert_eq!(pi[1], r(vec![mark(A, A)], Action::Return, &[]));
    // 3 allow rules = 6 rules, trailing RETURN stripped.
    assert_eq!(pi.len(), 5);
    assert_eq!(pi[4].action, set_mark(A));

    let rs6 = render(&seed_view(), Family::V6).unwrap();
    let pi6 = chain(&rs6, TableName::Filter, "cali-pi-gnp/k8s-worker-host");
    // Only the kubelet rule survives: the SSH rule has a v4 net, ICMP is v4-only.
    assert_eq!(
        pi6,
        &[r(
            vec![
                tcp,
                Match::DestinationPorts {
                    negated: false,
                    ports: vec![PortSpec::Single(10250)].into()
                }
            ],
            set_mark(A),
            &["GlobalNetworkPolicy k8s-worker-host ingress"]
        )]
    );
}

#[test]
fn seed_tables_hold_only_reachable_chains() {
    let rs = render(&seed_view(), Family::V4).unwrap();
    let names = |t| -> Vec<&str> { table(&rs, t).chains.keys().map(|s| s.as_str()).collect() };
    assert_eq!(
        names(TableName::Raw),
        vec![
            "cali-OUTPUT",
            "cali-PREROUTING",
            "cali-from-host-endpoint",
            "cali-rpf-skip",
            "cali-to-host-endpoint"
        ]
    );
    assert_eq!(
        names(TableName::Mangle),
        vec![
            "cali-POSTROUTING",
            "cali-PREROUTING",
            "cali-egress-dscp",
            "cali-failsafe-out",
            "cali-from-host-endpoint",
            "cali-po-gnp/k8s-worker-host",
            "cali-th-eth0",
            "cali-to-host-endpoint"
        ]
    );
    assert_eq!(
        names(TableName::Filter),
        vec![
            "cali-FORWARD",
            "cali-INPUT",
            "cali-OUTPUT",
            "cali-cidr-block",
            "cali-failsafe-in",
            "cali-failsafe-out",
            "cali-fh-eth0",
            "cali-fhfw-eth0",
            "cali-from-hep-forward",
            "cali-from-host-endpoint",
            "cali-from-wl-dispatch",
            "cali-pi-gnp/k8s-worker-host",
            "cali-po-gnp/k8s-worker-host",
            "cali-th-eth0",
            "cali-thfw-eth0",
            "cali-to-hep-forward",
            "cali-to-host-endpoint",
            "cali-to-wl-dispatch",
            "cali-wl-to-host"
        ]
    );
    let fwd: Vec<_> = table(&rs, TableName::Filter)
        .hooks
        .iter()
        .filter(|h| h.kernel_chain == "FORWARD")
        .map(|h| h.position)
        .collect();
    assert_eq!(
        fwd,
        vec![
            HookPosition::Insert,
            HookPosition::AlwaysAppend,
            HookPosition::AlwaysAppend
        ]
    );
}

#[test]
fn no_endpoints_means_no_failsafe_chains() {
    let mut v = seed_view();
    v.endpoints.clear();
    let rs = render(&v, Family::V4).unwrap();
    for t in &rs.tables {
        assert!(!t.chains.contains_key("cali-failsafe-in"), "{:?}", t.name);
        assert!(!t.chains.contains_key("cali-failsafe-out"), "{:?}", t.name);
        assert!(!t.chains.keys().any(|k| k.starts_with("cali-pi-")));
    }
}

#[test]
fn too_small_mark_mask_is_an_error() {
    let mut v = seed_view();
    v.config.iptables_mark_mask = 0xf;
    assert!(matches!(render(&v, Family::V4), Err(RenderError::Marks(_))));
}

fn policy_rules(v: &NodeView, family: Family, chain_name: &str) -> Vec<Rule> {
    let rs = render(v, family).unwrap();
    chain(&rs, TableName::Filter, chain_name).to_vec()
}

fn one_rule_view(rule: crate::model::Rule) -> NodeView {
    let mut v = seed_view();
    let p = gnp("k8s-worker-host", vec![rule], vec![]);
    v.policies.insert("k8s-worker-host".into(), p.into());
    v
}

#[test]
fn three_positive_blocks_reset_scratch1() {
    // 20 dst ports (2 splits), 2 src nets, 2 dst nets: three positive blocks.
    let mut rule = api_rule(RuleAction::Allow);
    rule.protocol = Some(Protocol::Tcp);
    rule.destination.ports = (1..=20).map(Port::Single).collect();
    rule.source.nets = vec![net("198.51.100.0/25"), net("198.51.100.128/25")].into();
    rule.destination.nets = vec![net("203.0.113.0/25"), net("203.0.113.128/25")].into();
    let rules = policy_rules(
        &one_rule_view(rule),
        Family::V4,
        "cali-pi-gnp/k8s-worker-host",
    );
    let (s0, s1) = (0x80000, 0x100000);
    let tcp = Match::Protocol {
        negated: false,
        name: "tcp".into(),
    };
    let src = |n| Match::Source {
        negated: false,
        net: net(n),
    };
    let dst = |n| Match::Destination {
        negated: false,
        net: net(n),
    };
    let ports = |a: u16, b: u16| Match::DestinationPorts {
        negated: false,
        ports: (a..=b).map(PortSpec::Single).collect(),
    };
    let expected = vec![
        r(
            vec![],
            Action::SetMaskedMark {
                value: 0,
                mask: s0 | s1,
            },
            &["GlobalNetworkPolicy k8s-worker-host ingress"],
        ),
        // Block 1 (ports) writes S0 directly.
        r(vec![tcp.clone(), ports(1, 15)], set_mark(s0), &[]),
        r(vec![tcp.clone(), ports(16, 20)], set_mark(s0), &[]),
        // Block 2 (src nets) writes S1, then ANDs into S0.
        r(vec![src("198.51.100.0/25")], set_mark(s1), &[]),
        r(vec![src("198.51.100.128/25")], set_mark(s1), &[]),
        r(vec![mark(0, s1)], clear_mark(s0), &[]),
        // Block 3 (dst nets) first resets S1 (the Felix gap fixed).
        r(vec![], clear_mark(s1), &[]),
        r(vec![dst("203.0.113.0/25")], set_mark(s1), &[]),
        r(vec![dst("203.0.113.128/25")], set_mark(s1), &[]),
        r(vec![mark(0, s1)], clear_mark(s0), &[]),
        r(vec![tcp, mark(s0, s0)], set_mark(A), &[]),
    ];
    assert_eq!(rules, expected);
}

#[test]
fn single_net_and_not_net_form_negative_block() {
    let mut rule = api_rule(RuleAction::Deny);
    rule.source.nets = vec![net("198.51.100.0/24")].into();
    rule.source.not_nets = vec![net("198.51.100.7/32")].into();
    let rules = policy_rules(
        &one_rule_view(rule),
        Family::V4,
        "cali-pi-gnp/k8s-worker-host",
    );
    let (s0, s1, d) = (0x80000, 0x100000, 0x40000);
    let expected = vec![
        r(
            vec![],
            Action::SetMaskedMark {
                value: s0,
                mask: s0 | s1,
            },
            &["GlobalNetworkPolicy k8s-worker-host ingress"],
        ),
        r(
            vec![Match::Source {
                negated: false,
                net: net("198.51.100.7/32"),
            }],
            clear_mark(s0),
            &[],
        ),
        r(
            vec![
                Match::Source {
                    negated: false,
                    net: net("198.51.100.0/24"),
                },
                mark(s0, s0),
            ],
            set_mark(d),
            &[],
        ),
        r(vec![mark(d, d)], Action::Drop, &[]),
    ];
    assert_eq!(rules, expected);
}

#[test]
fn ip_version_filtering() {
    let mut v6_only = api_rule(RuleAction::Allow);
    v6_only.ip_version = Some(IpVersion::V6);
    let mut icmp6 = api_rule(RuleAction::Allow);
    icmp6.protocol = Some(Protocol::IcmpV6);
    icmp6.icmp = Some(IcmpMatch {
        icmp_type: 128,
        code: Some(0),
    });
    let mut mixed = api_rule(RuleAction::Allow);
    mixed.destination.nets = vec![net("203.0.113.0/24"), net("2001:db8::/64")].into();
    let mut not_all = api_rule(RuleAction::Allow);
    not_all.source.not_nets = vec![net("0.0.0.0/0")].into();
    let mut v = seed_view();
    v.policies.insert(
        "k8s-worker-host".into(),
        gnp(
            "k8s-worker-host",
            vec![v6_only, icmp6, mixed, not_all],
            vec![],
        )
        .into(),
    );
    let name = "cali-pi-gnp/k8s-worker-host";
    // v4: only `mixed` (with its v4 net) and nothing else; not_all is dropped (catch-all).
    let v4 = policy_rules(&v, Family::V4, name);
    assert_eq!(v4.len(), 1);
    assert_eq!(
        v4[0].matches,
        vec![Match::Destination {
            negated: false,
            net: net("203.0.113.0/24")
        }]
        .into()
    );
    // v6: v6_only, icmp6 (with icmp6 type/code), mixed (v6 net), not_all (v4-only list empties
    // in v6 so the rule is dropped there too).
    let v6 = policy_rules(&v, Family::V6, name);
    let set_a: Vec<_> = v6.iter().filter(|r| r.action == set_mark(A)).collect();
    assert_eq!(set_a.len(), 3);
    assert_eq!(
        set_a[1].matches,
        vec![
            Match::Protocol {
                negated: false,
                name: "icmpv6".into()
            },
            Match::Icmp6 {
                negated: false,
                icmp_type: 128,
                code: Some(0)
            }
        ]
        .into()
    );
}

#[test]
fn selector_sets_fold_not_selector_and_collect_members() {
    let mut rule = api_rule(RuleAction::Allow);
    rule.source.selector = Some(Selector::parse("role == 'etcd'").unwrap());
    rule.source.not_selector = Some(Selector::parse("bad == 'x'").unwrap());
    let mut v = one_rule_view(rule);
    v.selector_sources = SelectorSources {
        endpoints: vec![SelectableEndpoint {
            name: "other".into(),
            labels: [("role".to_string(), "etcd".to_string())]
                .into_iter()
                .collect(),
            expected_ips: vec![
                "198.51.100.9".parse().unwrap(),
                "2001:db8::9".parse().unwrap(),
            ],
            ports: vec![],
        }],
        network_sets: vec![SelectableNetworkSet {
            name: "all".into(),
            labels: [("role".to_string(), "etcd".to_string())]
                .into_iter()
                .collect(),
            nets: vec![net("0.0.0.0/0")],
        }],
    };
    let rs = render(&v, Family::V4).unwrap();
    let folded = Selector::parse("(role == 'etcd') && (!(bad == 'x'))").unwrap();
    let id = folded.unique_id();
    let set_name = names::ipset_name(Family::V4, &id);
    let pi = chain(&rs, TableName::Filter, "cali-pi-gnp/k8s-worker-host");
    assert_eq!(
        pi[0].matches,
        vec![Match::Set {
            negated: false,
            name: set_name.clone().into(),
            direction: SetDirection::Src
        }]
        .into()
    );
    let set = &rs.ipsets[&set_name];
    assert_eq!(set.set_type, crate::ruleset::IpsetType::HashNet);
    assert_eq!(set.max_elements, 1_048_576);
    // Both sources carry role=etcd and not bad=x: the endpoint's v4 IP and the /0 split.
    let members: Vec<&str> = set.members.iter().map(|s| s.as_str()).collect();
    assert_eq!(members, vec!["0.0.0.0/1", "128.0.0.0/1", "198.51.100.9/32"]);
    // Besides the three (empty) sets of mangle cali-POSTROUTING's DSCP rule.
    assert_eq!(rs.ipsets.len(), 1 + static_chains::DSCP_SETS.len());
}

#[test]
fn reject_never_outside_filter() {
    let mut v = seed_view();
    v.config.iptables_filter_deny_action = DenyAction::Reject;
    let rs = render(&v, Family::V4).unwrap();
    for t in &rs.tables {
        for c in t.chains.values() {
            for rule in &c.rules {
                if rule.action == Action::Reject {
                    assert_eq!(t.name, TableName::Filter, "{}", c.name);
                }
            }
        }
    }
    let fh = chain(&rs, TableName::Filter, "cali-fh-eth0");
    assert_eq!(
        fh.last().unwrap(),
        &r(vec![], Action::Reject, &["Reject if no profiles matched"])
    );
    let th = chain(&rs, TableName::Mangle, "cali-th-eth0");
    assert_eq!(
        th.last().unwrap(),
        &r(vec![], Action::Drop, &["Drop if no profiles matched"])
    );
}

#[test]
fn protocol_with_not_protocol_uses_one_p_flag() {
    let mut differ = api_rule(RuleAction::Allow);
    differ.protocol = Some(Protocol::Tcp);
    differ.not_protocol = Some(Protocol::Udp);
    let mut same = api_rule(RuleAction::Allow);
    same.protocol = Some(Protocol::Udp);
    same.not_protocol = Some(Protocol::Number(17));
    let mut only_not = api_rule(RuleAction::Allow);
    only_not.not_protocol = Some(Protocol::Number(47));
    let mut v = seed_view();
    v.policies.insert(
        "k8s-worker-host".into(),
        gnp("k8s-worker-host", vec![differ, same, only_not], vec![]).into(),
    );
    let rules = policy_rules(&v, Family::V4, "cali-pi-gnp/k8s-worker-host");
    let marks: Vec<Vec<Match>> = rules
        .iter()
        .filter(|r| r.action == set_mark(A))
        .map(|r| r.matches.to_vec())
        .collect();
    assert_eq!(
        marks,
        vec![
            vec![Match::Protocol {
                negated: false,
                name: "tcp".into()
            }],
            vec![Match::Protocol {
                negated: true,
                name: "47".into()
            }],
        ]
    );
}

/// The seed view plus `eth1` governed by profile `prof-a` only and `eth2` with neither policy
/// nor profile.
fn provenance_view() -> NodeView {
    let mut v = seed_view();
    let endpoint = |iface: &str, profiles: Vec<String>| ActiveEndpoint {
        hep: format!("node1-{iface}"),
        interface: InterfaceName::Named(iface.into()),
        labels: Labels::new(),
        expected_ips: vec![],
        profiles,
        ports: vec![],
        policies: EndpointPolicies::default(),
    };
    v.endpoints.push(endpoint("eth1", vec!["prof-a".into()]));
    v.endpoints.push(endpoint("eth2", vec![]));
    let mut deny_tcp = api_rule(RuleAction::Deny);
    deny_tcp.protocol = Some(Protocol::Tcp);
    v.profiles.insert(
        "prof-a".into(),
        Profile {
            meta: meta("prof-a"),
            ingress: vec![deny_tcp, api_rule(RuleAction::Allow)],
            egress: vec![],
            labels_to_apply: Labels::new(),
        },
    );
    v
}

/// Index of the first rule of `chain` whose first comment starts with `comment`.
fn rule_with_comment(rs: &Ruleset, t: TableName, chain_name: &str, comment: &str) -> usize {
    chain(rs, t, chain_name)
        .iter()
        .position(|r| r.comments.first().is_some_and(|c| c.starts_with(comment)))
        .unwrap_or_else(|| panic!("no rule {comment:?} in {chain_name}"))
}

#[test]
fn provenance_of_policy_and_profile_rules() {
    use provenance::Origin::ApiRule;
    let v = provenance_view();
    // (family, chain, origin of each rule in order). v6 keeps only the kubelet rule (index 2):
    // the SSH rule has a v4 net and ICMP is v4-only.
    let cases: &[(Family, &str, &[Option<provenance::Origin>])] = &[
        (
            Family::V4,
            "cali-pi-gnp/k8s-worker-host",
            &[
                Some(ApiRule(0)),
                Some(ApiRule(0)),
                Some(ApiRule(1)),
                Some(ApiRule(1)),
                Some(ApiRule(2)),
            ],
        ),
        (
            Family::V6,
            "cali-pi-gnp/k8s-worker-host",
            &[Some(ApiRule(2))],
        ),
        (
            Family::V4,
            "cali-po-gnp/k8s-worker-host",
            &[Some(ApiRule(0)), Some(ApiRule(0)), Some(ApiRule(1))],
        ),
        // Deny (two rules), then allow (mark; its RETURN stripped at the end).
        (
            Family::V4,
            "cali-pri-prof-a",
            &[Some(ApiRule(0)), Some(ApiRule(0)), Some(ApiRule(1))],
        ),
        // No API rules: the comment-only placeholder comes from none.
        (Family::V4, "cali-pro-prof-a", &[None]),
    ];
    for (family, name, want) in cases {
        let (rs, prov) = render_with_provenance(&v, *family).unwrap();
        let rules = chain(&rs, TableName::Filter, name);
        let got: Vec<_> = (0..rules.len())
            .map(|i| prov.origin(TableName::Filter, name, i))
            .collect();
        assert_eq!(&got, want, "{family:?} {name}");
    }
    let (_, prov) = render_with_provenance(&v, Family::V4).unwrap();
    let owners = [
        (
            "cali-pi-gnp/k8s-worker-host",
            provenance::OwnerKind::Policy {
                tier: DEFAULT_TIER.into(),
            },
            "k8s-worker-host",
            Direction::Ingress,
        ),
        (
            "cali-po-gnp/k8s-worker-host",
            provenance::OwnerKind::Policy {
                tier: DEFAULT_TIER.into(),
            },
            "k8s-worker-host",
            Direction::Egress,
        ),
        (
            "cali-pri-prof-a",
            provenance::OwnerKind::Profile,
            "prof-a",
            Direction::Ingress,
        ),
        (
            "cali-thfw-eth0",
            provenance::OwnerKind::Endpoint {
                interface: "eth0".into(),
            },
            "node1-eth0",
            Direction::Egress,
        ),
    ];
    for (name, kind, owner, direction) in owners {
        let want = provenance::ChainOwner {
            kind,
            name: owner.into(),
            direction,
        };
        assert_eq!(prov.owner(name), Some(&want), "{name}");
    }
    assert_eq!(prov.owner(names::FORWARD), None);
}

#[test]
fn provenance_of_endpoint_defaults_tier_ends_and_failsafes() {
    use provenance::Origin::*;
    let v = provenance_view();
    let (rs, prov) = render_with_provenance(&v, Family::V4).unwrap();
    let filter = TableName::Filter;
    let tier_end = |o: Option<provenance::Origin>| match o {
        Some(TierEnd(t)) => Some(prov.tier(t).to_string()),
        _ => None,
    };
    // Tier ends, in filter and in mangle (the to-host chain of a policy'd endpoint).
    for (table, name) in [
        (filter, "cali-fh-eth0"),
        (filter, "cali-th-eth0"),
        (TableName::Mangle, "cali-th-eth0"),
    ] {
        let at = rule_with_comment(&rs, table, name, "End of tier default");
        assert_eq!(
            tier_end(prov.origin(table, name, at)).as_deref(),
            Some(DEFAULT_TIER),
            "{table:?} {name}"
        );
    }
    // (chain, comment of the rule, origin): the endpoint's last rules.
    let no_profile = "Drop if no profiles matched";
    let cases = [
        ("cali-fh-eth0", no_profile, ProfileFallThrough),
        ("cali-fh-eth1", no_profile, ProfileFallThrough),
        ("cali-fh-eth2", no_profile, DefaultAction),
        ("cali-th-eth2", no_profile, DefaultAction),
        (
            "cali-fhfw-eth0",
            "Allow forwarded traffic by default",
            ForwardDefaultAllow,
        ),
        (
            "cali-thfw-eth1",
            "Allow forwarded traffic by default",
            ForwardDefaultAllow,
        ),
    ];
    for (name, comment, want) in cases {
        let at = rule_with_comment(&rs, filter, name, comment);
        assert_eq!(
            prov.origin(filter, name, at),
            Some(want),
            "{name} {comment}"
        );
    }
    // Structural rules (conntrack, mark bookkeeping, jumps) come from nothing.
    let fh = chain(&rs, filter, "cali-fh-eth0");
    let structural: Vec<usize> = (0..fh.len())
        .filter(|&i| prov.origin(filter, "cali-fh-eth0", i).is_none())
        .collect();
    assert_eq!(
        structural.len(),
        fh.len() - 2,
        "all but the tier end and fall-through"
    );
    // Every failsafe entry, with the chain's direction.
    for (name, dir) in [
        (names::FAILSAFE_IN, Direction::Ingress),
        (names::FAILSAFE_OUT, Direction::Egress),
    ] {
        let n = chain(&rs, filter, name).len();
        assert_eq!(n, 2, "{name}");
        for i in 0..n {
            assert_eq!(prov.origin(filter, name, i), Some(Failsafe(dir)));
        }
    }
}

#[test]
fn provenance_names_only_rendered_rules() {
    let v = provenance_view();
    for family in Family::ALL {
        let (traced, prov) = render_with_provenance(&v, family).unwrap();
        assert_eq!(traced, render(&v, family).unwrap());
        // Every recorded origin names a rule the ruleset has (pruned chains left no trace).
        let mut seen = 0;
        for (table, name, index, _) in prov.entries() {
            assert!(
                index < chain(&traced, table, name).len(),
                "{table:?} {name}[{index}]"
            );
            seen += 1;
        }
        assert!(seen > 10, "{family:?}: {seen} origins");
    }
}

#[test]
fn endpoints_with_the_same_policies_share_their_chain_bodies_and_render_as_alone() {
    let mut v = seed_view();
    let eth0 = v.endpoints[0].clone();
    let mut eth1 = eth0.clone();
    eth1.hep = "node1-eth1".into();
    eth1.interface = InterfaceName::Named("eth1".into());
    // eth2: same policies, one profile more; eth3: no egress policy.
    let mut eth2 = eth1.clone();
    eth2.hep = "node1-eth2".into();
    eth2.interface = InterfaceName::Named("eth2".into());
    eth2.profiles = vec!["extra".into()];
    let mut eth3 = eth1.clone();
    eth3.hep = "node1-eth3".into();
    eth3.interface = InterfaceName::Named("eth3".into());
    eth3.policies.egress.clear();
    v.endpoints = vec![eth0, eth1, eth2, eth3];
    let rs = render(&v, Family::V4).unwrap();
    let body = |t: TableName, name: &str| table(&rs, t).chains[name].rules.clone();
    for (t, prefix) in [
        (TableName::Filter, "cali-fh-"),
        (TableName::Filter, "cali-th-"),
        (TableName::Mangle, "cali-th-"),
    ] {
        let shared = body(t, &format!("{prefix}eth0"));
        assert!(
            Rules::ptr_eq(&shared, &body(t, &format!("{prefix}eth1"))),
            "{t:?} {prefix}: the same policies share one body"
        );
        assert!(!Rules::ptr_eq(&shared, &body(t, &format!("{prefix}eth2"))));
    }
    assert_ne!(
        body(TableName::Filter, "cali-th-eth0"),
        body(TableName::Filter, "cali-th-eth3")
    );
    assert_eq!(
        body(TableName::Filter, "cali-fh-eth0"),
        body(TableName::Filter, "cali-fh-eth3"),
        "same ingress policies: equal rules"
    );
    // Each endpoint's chains are what a view holding only that endpoint renders.
    for ep in v.endpoints.clone() {
        let mut alone = v.clone();
        alone.endpoints = vec![ep.clone()];
        let (alone_rs, alone_prov) = render_with_provenance(&alone, Family::V4).unwrap();
        let (_, prov) = render_with_provenance(&v, Family::V4).unwrap();
        let iface = endpoint::iface_name(&ep).to_string();
        for t in [TableName::Filter, TableName::Mangle] {
            for (name, chain) in &table(&alone_rs, t).chains {
                if !name.ends_with(&format!("-{iface}")) {
                    continue;
                }
                assert_eq!(chain.rules, body(t, name), "{t:?} {name}");
                for i in 0..chain.rules.len() {
                    assert_eq!(
                        prov.origin(t, name, i),
                        alone_prov.origin(t, name, i),
                        "{t:?} {name}[{i}]"
                    );
                }
            }
        }
    }
}

/// The four-endpoint view of the sharing test, with three policies: `a` and `b` share a
/// selector (one policy group), `k8s-worker-host` has its own rules. `b` also logs, and asks
/// for a selector set and a named-port set, whose members come from `selector_sources`.
fn memo_view() -> NodeView {
    let mut v = seed_view();
    let mut ssh = api_rule(RuleAction::Allow);
    ssh.protocol = Some(Protocol::Tcp);
    ssh.destination.ports = vec![Port::Single(22)].into();
    let mut from_db = api_rule(RuleAction::Allow);
    from_db.protocol = Some(Protocol::Tcp);
    from_db.source.selector = Some(Selector::parse("role == 'db'").unwrap());
    from_db.destination.ports = vec![Port::Named("web".into())].into();
    let mut log = api_rule(RuleAction::Log);
    log.protocol = Some(Protocol::Udp);
    for (name, ingress) in [("a", vec![ssh.clone()]), ("b", vec![log, ssh, from_db])] {
        let mut p = gnp(name, ingress, vec![]);
        p.selector = Selector::parse("all()").unwrap();
        v.policies.insert(name.into(), p.into());
    }
    let labels: Labels = [("role".to_string(), "db".to_string())]
        .into_iter()
        .collect();
    v.selector_sources = SelectorSources {
        endpoints: vec![SelectableEndpoint {
            name: "db-eth0".into(),
            labels: labels.clone(),
            expected_ips: vec!["10.0.0.30".parse().unwrap(), "fd00::30".parse().unwrap()],
            ports: vec![EndpointPort {
                name: "web".into(),
                protocol: Protocol::Tcp,
                port: 8080,
            }],
        }],
        network_sets: vec![SelectableNetworkSet {
            name: "db-nets".into(),
            labels,
            nets: vec![net("10.9.0.0/16"), net("fd00:9::/64")],
        }],
    };
    let names = ["a", "b", "k8s-worker-host"];
    let eth0 = v.endpoints[0].clone();
    v.endpoints = (0..4)
        .map(|i| {
            let mut ep = eth0.clone();
            ep.hep = format!("node1-eth{i}");
            ep.interface = InterfaceName::Named(format!("eth{i}"));
            ep.policies.ingress = tier(&names[..2 + i % 2]);
            ep.policies.egress = tier(&names);
            ep
        })
        .collect();
    v
}

#[test]
fn a_render_with_the_last_renders_memo_equals_a_fresh_one_and_reuses_unchanged_bodies() {
    type Edit = fn(&mut NodeView);
    let edits: [(&str, Edit); 15] = [
        ("nothing", |_| {}),
        ("two policies of one group swapped", |v| {
            v.endpoints[0].policies.egress = tier(&["b", "a", "k8s-worker-host"]);
        }),
        ("a policy's rules", |v| {
            let p = v.policies.get_mut("k8s-worker-host").unwrap();
            Arc::make_mut(p).ingress[0].destination.ports = vec![Port::Single(2222)].into();
        }),
        ("a selector, splitting a group", |v| {
            Arc::make_mut(v.policies.get_mut("b").unwrap()).selector =
                Selector::parse("has(x)").unwrap();
        }),
        ("the order of an endpoint's policies", |v| {
            v.endpoints[1].policies.egress = tier(&["k8s-worker-host", "a", "b"]);
        }),
        ("a tier's default action", |v| {
            v.endpoints[2].policies.egress[0].default_action = TierAction::Pass;
        }),
        ("an endpoint's profiles", |v| {
            v.endpoints[3].profiles = vec!["extra".into()];
        }),
        ("the deny action", |v| {
            v.config.iptables_filter_deny_action = DenyAction::Reject;
        }),
        ("the conntrack INVALID check", |v| {
            v.config.disable_conntrack_invalid_check = true;
        }),
        ("the mark mask", |v| {
            v.config.iptables_mark_mask = 0x0ff0_0000
        }),
        ("the filter allow action", |v| {
            v.config.iptables_filter_allow_action = AllowAction::Return;
        }),
        ("the log prefix", |v| {
            v.config.log_prefix = "edited-%n".into()
        }),
        ("a selected network set's members", |v| {
            let nets = &mut v.selector_sources.network_sets[0].nets;
            nets.extend([net("10.8.0.0/16"), net("fd00:8::/64")]);
        }),
        ("a selected endpoint's named port", |v| {
            v.selector_sources.endpoints[0].ports[0].port = 8443;
        }),
        ("a policy replaced by an equal copy", |v| {
            let b = v.policies.get_mut("b").unwrap();
            *b = Arc::new((**b).clone());
        }),
    ];
    for family in Family::ALL {
        let memo = RenderMemo::default();
        let mut v = memo_view();
        let (mut last, _) = render_remembering(&v, family, &memo).unwrap();
        for (what, edit) in edits {
            let before = v.clone();
            edit(&mut v);
            let (kept, kept_prov) = render_remembering(&v, family, &memo).unwrap();
            let (fresh, fresh_prov) = render_with_provenance(&v, family).unwrap();
            assert_eq!(kept, fresh, "{family:?} after {what}");
            assert_eq!(kept_prov, fresh_prov, "{family:?} after {what}");
            // And each endpoint's chains are what it renders alone (no body to share).
            for ep in &v.endpoints {
                let mut alone = v.clone();
                alone.endpoints = vec![ep.clone()];
                let alone = render(&alone, family).unwrap();
                let iface = format!("-{}", endpoint::iface_name(ep));
                for (t, alone_t) in kept.tables.iter().zip(&alone.tables) {
                    for (name, chain) in alone_t.chains.iter().filter(|(n, _)| n.ends_with(&iface))
                    {
                        assert_eq!(
                            t.chains.get(name).map(|c| &c.rules),
                            Some(&chain.rules),
                            "{family:?} after {what}: {:?} {name}",
                            t.name
                        );
                    }
                }
            }
            // What did not change is the same body as before: neither built nor read again.
            for (now, before) in kept.tables.iter().zip(&last.tables) {
                for (name, chain) in &now.chains {
                    let Some(old) = before.chains.get(name) else {
                        continue;
                    };
                    if name.starts_with("cali-fh-") || name.starts_with("cali-th-") {
                        assert_eq!(
                            Rules::ptr_eq(&chain.rules, &old.rules),
                            chain.rules == old.rules,
                            "{family:?} after {what}: {:?} {name}",
                            now.name
                        );
                    }
                }
            }
            // A policy chain is taken again exactly when its policy is the same shared value
            // and the configuration is unchanged; it is never built again otherwise.
            for (name, policy) in &v.policies {
                let same = before
                    .policies
                    .get(name)
                    .is_some_and(|old| Arc::ptr_eq(old, policy))
                    && before.config == v.config;
                for dir in Direction::ALL {
                    let chain = names::policy_chain_for(dir, name);
                    for (now, old) in kept.tables.iter().zip(&last.tables) {
                        let (Some(now_c), Some(old_c)) =
                            (now.chains.get(&chain), old.chains.get(&chain))
                        else {
                            continue;
                        };
                        assert_eq!(
                            Rules::ptr_eq(&now_c.rules, &old_c.rules),
                            same,
                            "{family:?} after {what}: {:?} {chain}",
                            now.name
                        );
                    }
                }
            }
            last = kept;
        }
        // The named-port and selector sets are in the ruleset, with the last edit's members.
        assert!(last
            .ipsets
            .values()
            .any(|s| s.set_type == IpsetType::HashIpPort
                && s.members.iter().any(|m| m.ends_with(":8443"))));
        assert!(last
            .ipsets
            .values()
            .any(|s| s.set_type == IpsetType::HashNet && s.members.len() == 3));
        // Exactly the last render's policy chains are held.
        let policy_chains = last
            .tables
            .iter()
            .flat_map(|t| t.chains.keys())
            .filter(|n| n.starts_with("cali-pi-") || n.starts_with("cali-po-"))
            .count();
        assert_eq!(memo.policy_chains_held(family), policy_chains);
        // Exactly the last render's bodies are held.
        let endpoint_chains: std::collections::BTreeSet<_> = last
            .tables
            .iter()
            .flat_map(|t| {
                t.chains
                    .iter()
                    .filter(|(n, _)| n.starts_with("cali-fh") || n.starts_with("cali-th"))
                    .map(move |(_, c)| (t.name, c.rules.as_ptr()))
            })
            .collect();
        assert_eq!(memo.held(family), endpoint_chains.len());
    }
}
