//! Felix v3.32.1's own unit-test vectors, transliterated (the facts, not the code): expected
//! chains from felix/rules/static_test.go, endpoints_test.go (policy groups, forward chains) and
//! policy_test.go, checked against hostfw's render of the equivalent resources. Rules are
//! compared in Felix's text form without the hash comment. Marks are hostfw's allocation for
//! the default mask (accept 0x10000, pass 0x20000, drop 0x40000, scratch-0 0x80000, scratch-1
//! 0x100000; docs/felix-layout.md, Marks), where Felix's tests use small hand-picked bits.

use hostfw::policy::load_sources;
use hostfw::render::render;
use hostfw::resolve::{resolve, HostInterfaces};
use hostfw::ruleset::felix::write_rule_body;
use hostfw::ruleset::{Family, Ruleset, TableName};
use hostfw::source::NamedText;

const NODE: &str = "n1";

fn rendered(yaml: &str, family: Family) -> Ruleset {
    let loaded = load_sources(&[NamedText {
        name: "vectors.yaml".into(),
        text: yaml.into(),
    }]);
    let Some(set) = loaded.set else {
        let diags: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        panic!("invalid vector input:\n{}", diags.join("\n"));
    };
    let view = resolve(&set, NODE, &HostInterfaces::new());
    render(&view, family).expect("render")
}

/// The rules of `chain` in `table`, each in Felix's form after the hash comment; None when the
/// chain is not rendered.
fn chain(rs: &Ruleset, table: TableName, chain: &str) -> Option<Vec<String>> {
    let t = rs.tables.iter().find(|t| t.name == table)?;
    let c = t.chains.get(chain)?;
    Some(
        c.rules
            .iter()
            .map(|r| {
                let mut s = String::new();
                write_rule_body(&mut s, r);
                s.trim_start().to_string()
            })
            .collect(),
    )
}

fn rules(rs: &Ruleset, table: TableName, name: &str) -> Vec<String> {
    chain(rs, table, name).unwrap_or_else(|| panic!("{} {name} is not rendered", table.as_str()))
}

fn hep(labels: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {{name: h, labels: {labels}}}\n\
         spec: {{node: {NODE}, interfaceName: eth0}}\n"
    )
}

fn gnp(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\n\
         spec: {spec}\n"
    )
}

/// static_test.go "with default config": the failsafe lists of that test.
const STATIC_TEST_FAILSAFES: &str = "---\napiVersion: projectcalico.org/v3\nkind: FelixConfiguration\n\
    metadata: {name: default}\nspec:\n  failsafeInboundHostPorts: [{protocol: TCP, port: 22, net: 0.0.0.0/0}, \
    {protocol: TCP, port: 1022, net: 10.0.0.0/24}, {protocol: TCP, port: 1022, net: \"::/0\"}]\n  \
    failsafeOutboundHostPorts: [{protocol: TCP, port: 23, net: 0.0.0.0/0}, {protocol: TCP, port: 1023, net: 0.0.0.0/0}]\n";

/// An untracked policy, so that the raw failsafe chains are referenced and rendered.
fn untracked() -> String {
    gnp(
        "raw",
        "{selector: all(), doNotTrack: true, applyOnForward: true, ingress: [{action: Allow, protocol: UDP}]}",
    )
}

#[test]
fn static_failsafe_chains() {
    let yaml = format!("{}{STATIC_TEST_FAILSAFES}{}", hep("{a: b}"), untracked());
    let v4 = rendered(&yaml, Family::V4);
    assert_eq!(
        rules(&v4, TableName::Filter, "cali-failsafe-in"),
        [
            "-p tcp -m multiport --destination-ports 22 --source 0.0.0.0/0 --jump ACCEPT",
            "-p tcp -m multiport --destination-ports 1022 --source 10.0.0.0/24 --jump ACCEPT",
        ]
    );
    assert_eq!(
        rules(&v4, TableName::Filter, "cali-failsafe-out"),
        [
            "-p tcp -m multiport --destination-ports 23 --destination 0.0.0.0/0 --jump ACCEPT",
            "-p tcp -m multiport --destination-ports 1023 --destination 0.0.0.0/0 --jump ACCEPT",
        ]
    );
    assert_eq!(
        rules(&v4, TableName::Raw, "cali-failsafe-in"),
        [
            "-p tcp -m multiport --destination-ports 22 --source 0.0.0.0/0 --jump ACCEPT",
            "-p tcp -m multiport --destination-ports 1022 --source 10.0.0.0/24 --jump ACCEPT",
            "-p tcp -m multiport --source-ports 23 --source 0.0.0.0/0 --jump ACCEPT",
            "-p tcp -m multiport --source-ports 1023 --source 0.0.0.0/0 --jump ACCEPT",
        ]
    );
    assert_eq!(
        rules(&v4, TableName::Raw, "cali-failsafe-out"),
        [
            "-p tcp -m multiport --destination-ports 23 --destination 0.0.0.0/0 --jump ACCEPT",
            "-p tcp -m multiport --destination-ports 1023 --destination 0.0.0.0/0 --jump ACCEPT",
            "-p tcp -m multiport --source-ports 22 --destination 0.0.0.0/0 --jump ACCEPT",
            "-p tcp -m multiport --source-ports 1022 --destination 10.0.0.0/24 --jump ACCEPT",
        ]
    );
    let v6 = rendered(&yaml, Family::V6);
    assert_eq!(
        rules(&v6, TableName::Filter, "cali-failsafe-in"),
        ["-p tcp -m multiport --destination-ports 1022 --source ::/0 --jump ACCEPT"]
    );
    assert_eq!(
        rules(&v6, TableName::Filter, "cali-failsafe-out"),
        Vec::<String>::new()
    );
    assert_eq!(
        rules(&v6, TableName::Raw, "cali-failsafe-out"),
        ["-p tcp -m multiport --source-ports 1022 --destination ::/0 --jump ACCEPT"]
    );
}

#[test]
fn static_default_failsafe_ports_are_felix_v3_32() {
    // felix/config/config_params.go FailsafeInboundHostPorts / FailsafeOutboundHostPorts.
    let v4 = rendered(&hep("{a: b}"), Family::V4);
    let ports = |chain: &str| -> Vec<String> {
        rules(&v4, TableName::Filter, chain)
            .iter()
            .map(|r| {
                let w: Vec<&str> = r.split(' ').collect();
                format!("{}:{}", w[1], w[5])
            })
            .collect()
    };
    assert_eq!(
        ports("cali-failsafe-in").join(","),
        "tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667"
    );
    assert_eq!(
        ports("cali-failsafe-out").join(","),
        "udp:53,udp:67,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667"
    );
}

#[test]
fn static_raw_prerouting() {
    // static_test.go "IPv4/IPv6: Should return expected raw PREROUTING chain"; the RPF drop is
    // DROP (REJECT is filter-only: docs/felix-layout.md, Deviations).
    for family in [Family::V4, Family::V6] {
        let rs = rendered(&hep("{a: b}"), family);
        assert_eq!(
            rules(&rs, TableName::Raw, "cali-PREROUTING"),
            [
                "--jump MARK --set-mark 0/0x1b0000",
                "--in-interface cali+ --jump MARK --set-mark 0x80000/0x80000",
                "-m mark --mark 0x80000/0x80000 --jump cali-rpf-skip",
                "-m mark --mark 0x80000/0x80000 -m rpfilter --invert --validmark --jump DROP",
                "-m mark --mark 0/0x80000 --jump cali-from-host-endpoint",
                "-m mark --mark 0x10000/0x10000 --jump ACCEPT",
            ],
            "{family:?}"
        );
        // felix/dataplane/linux/endpoint_mgr.go updateRPFSkipChain: empty without workloads.
        assert_eq!(
            rules(&rs, TableName::Raw, "cali-rpf-skip"),
            Vec::<String>::new()
        );
    }
}

#[test]
fn static_mangle_postrouting() {
    // static_test.go checkManglePostrouting (BPF off, IPVS off).
    for (family, p) in [(Family::V4, "cali40"), (Family::V6, "cali60")] {
        let rs = rendered(&hep("{a: b}"), family);
        assert_eq!(
            rules(&rs, TableName::Mangle, "cali-POSTROUTING"),
            [
                format!(
                    "-m comment --comment \"set dscp for traffic leaving cluster.\" -m set \
                     --match-set {p}dscp-src-net src -m set ! --match-set {p}network-ip-pools \
                     dst -m set ! --match-set {p}this-host dst --jump cali-egress-dscp"
                )
                .as_str(),
                "-m mark --mark 0x10000/0x10000 --jump RETURN",
                "--jump MARK --set-mark 0/0x1b0000",
                "-m conntrack --ctstate DNAT --jump cali-to-host-endpoint",
                "-m comment --comment \"Host endpoint policy accepted packet.\" -m mark --mark \
                 0x10000/0x10000 --jump RETURN",
            ]
        );
        // felix/rules/dscp.go EgressDSCPChain: no rules without DSCP endpoints.
        assert_eq!(
            rules(&rs, TableName::Mangle, "cali-egress-dscp"),
            Vec::<String>::new()
        );
        // The three sets exist (empty) so the rule loads.
        for set in ["dscp-src-net", "network-ip-pools", "this-host"] {
            let s = &rs.ipsets[&format!("{p}{set}")];
            assert!(s.members.is_empty(), "{p}{set}");
        }
    }
}

#[test]
fn static_filter_forward() {
    // static_test.go "should include the expected forward chain in the filter chains".
    let rs = rendered(&hep("{a: b}"), Family::V4);
    assert_eq!(
        rules(&rs, TableName::Filter, "cali-FORWARD"),
        [
            "--jump MARK --set-mark 0/0x1a0000",
            "-m mark --mark 0/0x10000 --jump cali-from-hep-forward",
            "--in-interface cali+ --jump cali-from-wl-dispatch",
            "--out-interface cali+ --jump cali-to-wl-dispatch",
            "--jump cali-to-hep-forward",
            "--jump cali-cidr-block",
        ]
    );
    // felix/rules/nat.go BlockedCIDRsToIptablesChains: empty without service CIDRs.
    assert_eq!(
        rules(&rs, TableName::Filter, "cali-cidr-block"),
        Vec::<String>::new()
    );
}

#[test]
fn static_interface_prefix_list_one_rule_per_prefix() {
    // felix/config/config_params.go InterfacePrefixes(); felix/rules/static.go writes the
    // workload rules once per prefix.
    let yaml = format!(
        "{}---\napiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {{name: default}}\n\
         spec: {{interfacePrefix: \"cali,tap\"}}\n",
        hep("{a: b}")
    );
    let rs = rendered(&yaml, Family::V4);
    let input = rules(&rs, TableName::Filter, "cali-INPUT");
    assert_eq!(
        input[..2],
        [
            "--in-interface cali+ --goto cali-wl-to-host",
            "--in-interface tap+ --goto cali-wl-to-host",
        ]
    );
    let output = rules(&rs, TableName::Filter, "cali-OUTPUT");
    assert_eq!(
        output[1..3],
        [
            "--out-interface cali+ --jump RETURN",
            "--out-interface tap+ --jump RETURN",
        ]
    );
    let forward = rules(&rs, TableName::Filter, "cali-FORWARD");
    assert_eq!(
        forward[2..6],
        [
            "--in-interface cali+ --jump cali-from-wl-dispatch",
            "--out-interface cali+ --jump cali-to-wl-dispatch",
            "--in-interface tap+ --jump cali-from-wl-dispatch",
            "--out-interface tap+ --jump cali-to-wl-dispatch",
        ]
    );
    let raw = rules(&rs, TableName::Raw, "cali-PREROUTING");
    assert_eq!(
        raw[1..3],
        [
            "--in-interface cali+ --jump MARK --set-mark 0x80000/0x80000",
            "--in-interface tap+ --jump MARK --set-mark 0x80000/0x80000",
        ]
    );
    assert!(
        ["cali-INPUT", "cali-OUTPUT", "cali-FORWARD"]
            .iter()
            .flat_map(|c| rules(&rs, TableName::Filter, c))
            .all(|r| !r.contains(',')),
        "no rule names the list itself"
    );
}

#[test]
fn static_no_nat_table() {
    // Felix's nat chains (StaticNATTableChains) serve IP pools and floating IPs; hostfw writes
    // no nat table (docs/felix-layout.md, Deviations) and removes Felix's on takeover.
    let rs = rendered(&hep("{a: b}"), Family::V4);
    assert!(rs.tables.iter().all(|t| t.name != TableName::Nat));
}

/// endpoints.go: forward chains of a host endpoint with the forward tiers of `policies`.
fn forward_chains(policies: &str) -> (Vec<String>, Vec<String>) {
    let rs = rendered(&format!("{}{policies}", hep("{role: r}")), Family::V4);
    (
        rules(&rs, TableName::Filter, "cali-fhfw-eth0"),
        rules(&rs, TableName::Filter, "cali-thfw-eth0"),
    )
}

const DEFAULT_ALLOW_FORWARD: [&str; 2] = [
    "-m comment --comment \"Allow forwarded traffic by default\" --jump MARK --set-mark 0x10000/0x10000",
    "-m comment --comment \"Return for accepted forward traffic\" --jump RETURN",
];

#[test]
fn endpoint_forward_default_allow_only_without_forward_tiers() {
    // Without applyOnForward policy: both directions allow by default.
    let (from, to) = forward_chains("");
    assert_eq!(from[from.len() - 2..], DEFAULT_ALLOW_FORWARD);
    assert_eq!(to[to.len() - 2..], DEFAULT_ALLOW_FORWARD);
    // felix/calc/event_sequencer.go tierInfoToProtoTierInfo: a tier is a forward tier when it
    // has ingress OR egress applyOnForward policies, and endpointIptablesChain allows by
    // default only when there is no forward tier at all. An ingress-only forward policy
    // therefore leaves cali-thfw- without the default allow (and without any tier rules: the
    // tier has no egress policy), so the packet returns unmarked to the FORWARD chain.
    let (from, to) = forward_chains(&gnp(
        "fwd-in",
        "{selector: role == 'r', applyOnForward: true, types: [Ingress], ingress: [{action: Allow, protocol: TCP}]}",
    ));
    assert!(from.iter().all(|r| !r.contains("by default")), "{from:?}");
    assert_eq!(
        to,
        [
            "-m conntrack --ctstate RELATED,ESTABLISHED --jump ACCEPT",
            "-m conntrack --ctstate INVALID --jump DROP",
            "--jump MARK --set-mark 0/0x30000",
        ]
    );
}

/// Felix's policy-group chain of `n` GlobalNetworkPolicies p1..pn (same selector, one tier):
/// endpoints_test.go "PolicyGroup chains": the first jump of every block of five unguarded, the
/// others behind `-m mark --mark 0/pass|accept`, a "Return on verdict" before each new block.
fn group_rules(n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        if i != 0 && i % 5 == 0 {
            out.push(
                "-m comment --comment \"Return on verdict\" -m mark ! --mark 0/0x30000 --jump RETURN"
                    .to_string(),
            );
        }
        let guard = if i % 5 == 0 {
            String::new()
        } else {
            "-m mark --mark 0/0x30000 ".to_string()
        };
        out.push(format!("{guard}--jump cali-pi-gnp/p{}", i + 1));
    }
    out
}

#[test]
fn endpoint_policy_group_chains() {
    for n in 2..=7 {
        let policies: String = (1..=n)
            .map(|i| {
                gnp(
                    &format!("p{i}"),
                    &format!("{{order: {i}, selector: all(), types: [Ingress], ingress: [{{action: Allow}}]}}"),
                )
            })
            .collect();
        let rs = rendered(&format!("{}{policies}", hep("{a: b}")), Family::V4);
        let fh = rules(&rs, TableName::Filter, "cali-fh-eth0");
        let jumps: Vec<&String> = fh.iter().filter(|r| r.contains("cali-gi-")).collect();
        assert_eq!(jumps.len(), 1, "one group jump for {n} policies: {fh:?}");
        let group = jumps[0].rsplit(' ').next().expect("target");
        assert_eq!(
            rules(&rs, TableName::Filter, group),
            group_rules(n),
            "{n} policies"
        );
    }
}

#[test]
fn endpoint_policy_group_single_policy_is_inlined() {
    // PolicyGroup.ShouldBeInlined: a group of one is jumped to directly.
    let rs = rendered(
        &format!(
            "{}{}",
            hep("{a: b}"),
            gnp(
                "p1",
                "{selector: all(), types: [Ingress], ingress: [{action: Allow}]}"
            )
        ),
        Family::V4,
    );
    let fh = rules(&rs, TableName::Filter, "cali-fh-eth0");
    assert!(fh.iter().any(|r| r.ends_with("--jump cali-pi-gnp/p1")));
    assert!(fh.iter().all(|r| !r.contains("cali-gi-")));
}

#[test]
fn endpoint_policy_group_ids() {
    // felix/rules/endpoints.go PolicyGroup.UniqueID: SHA3-224 over the normalised selector,
    // the direction ("inbound"/"outbound"), the policy count and each PolicyID.String(), each
    // followed by "\n"; base64url without padding, first 20 characters. Felix's tests publish
    // no ID value; these were computed from that definition independently of hostfw (Python's
    // hashlib.sha3_224), for the policy set of tests/golden/render/38-policy-groups.
    let yaml = std::fs::read_to_string("tests/golden/render/38-policy-groups/policies/all.yaml")
        .expect("golden input")
        .replace("host-a", NODE);
    let rs = rendered(&yaml, Family::V4);
    let targets = |chain: &str| -> Vec<String> {
        rules(&rs, TableName::Filter, chain)
            .iter()
            .filter_map(|r| r.rsplit(' ').next())
            .filter(|t| t.starts_with("cali-g") || t.starts_with("cali-p"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        targets("cali-fh-eth0"),
        [
            "cali-gi-ItswpyLS4aBwClYS5qld",
            "cali-pi-gnp/b",
            "cali-gi-gvljlcDxza7ENMQmyPAM",
        ]
    );
    assert_eq!(targets("cali-th-eth0"), ["cali-go-ioaxXijVoQE4zmDgrpRi"]);
}

#[test]
fn policy_named_port_without_protocol() {
    // felix/calc/rule_scanner.go: with no protocol the named-port set is "any" protocol; the
    // rule has no -p (policy_test.go renders named-port sets as `dst,dst` matches).
    let yaml = format!(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {{name: h, labels: {{a: b}}}}\n\
         spec: {{node: {NODE}, interfaceName: eth0, expectedIPs: [198.51.100.10], ports: [{{name: dns, \
         protocol: UDP, port: 53}}, {{name: dns, protocol: TCP, port: 53}}]}}\n{}",
        gnp(
            "dns",
            "{selector: all(), types: [Ingress], ingress: [{action: Allow, destination: {ports: [dns]}}]}"
        )
    );
    let rs = rendered(&yaml, Family::V4);
    let pi = rules(&rs, TableName::Filter, "cali-pi-gnp/dns");
    assert_eq!(pi.len(), 1, "{pi:?}");
    let set = pi[0]
        .split("--match-set ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("named-port set");
    assert!(!pi[0].contains(" -p "), "{}", pi[0]);
    assert!(pi[0].contains(&format!("--match-set {set} dst,dst")));
    let members: Vec<&str> = rs.ipsets[set].members.iter().map(String::as_str).collect();
    assert_eq!(members, ["198.51.100.10,tcp:53", "198.51.100.10,udp:53"]);
}
