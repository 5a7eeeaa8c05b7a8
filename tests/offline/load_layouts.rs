//! Loader tests: every document layout produces the typed PolicySet; layout errors are located.

use hostfw::model::*;
use hostfw::policy::load_sources;
use hostfw::source::NamedText;

fn load(text: &str) -> hostfw::policy::Loaded {
    load_sources(&[NamedText {
        name: "t.yaml".into(),
        text: text.into(),
    }])
}

fn messages(l: &hostfw::policy::Loaded) -> Vec<String> {
    l.diagnostics.iter().map(|d| d.to_string()).collect()
}

const ALL_SIX: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h1, labels: {role: web}}
spec: {node: n1, interfaceName: eth0, expectedIPs: ["198.51.100.1"], profiles: [p1]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-ssh}
spec:
  tier: t1
  selector: role == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [22]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: s1, labels: {k: v}}
spec: {nets: ["203.0.113.7", "198.51.100.9/24"]}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: p1}
spec: {labelsToApply: {extra: "yes-really"}}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: t1}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  failsafeInboundHostPorts: [{protocol: TCP, port: 22}]
  iptablesMarkMask: 0xffff0000
"#;

#[test]
fn all_six_kinds_load_into_the_typed_set() {
    let l = load(ALL_SIX);
    assert_eq!(messages(&l), Vec::<String>::new());
    let set = l.set.expect("valid");
    assert_eq!(set.host_endpoints.len(), 1);
    let hep = &set.host_endpoints[0];
    assert_eq!(hep.node, "n1");
    assert_eq!(hep.interface, Some(InterfaceName::Named("eth0".into())));
    assert_eq!(hep.meta.labels.get("role").map(String::as_str), Some("web"));
    assert_eq!(hep.meta.origin.line, 2);
    let gnp = &set.policies[0];
    assert_eq!(gnp.tier, "t1");
    assert_eq!(gnp.order, None);
    // types omitted with only ingress rules: [Ingress].
    assert_eq!(
        gnp.types,
        PolicyTypes {
            ingress: true,
            egress: false
        }
    );
    assert_eq!(
        gnp.ingress[0].destination.ports,
        vec![Port::Single(22)].into()
    );
    assert_eq!(gnp.ingress[0].protocol, Some(Protocol::Tcp));
    // GNS nets are normalised: bare IP -> /32, host bits dropped.
    assert_eq!(
        set.network_sets[0].nets,
        vec![
            "203.0.113.7/32".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap()
        ]
    );
    assert_eq!(
        set.profiles[0]
            .labels_to_apply
            .get("extra")
            .map(String::as_str),
        Some("yes-really")
    );
    // The user's tier plus the three built-in tiers, sorted by name.
    let tiers: Vec<(&str, Option<f64>)> = set
        .tiers
        .iter()
        .map(|t| (t.meta.name.as_str(), t.order))
        .collect();
    assert_eq!(
        tiers,
        vec![
            ("default", Some(1_000_000.0)),
            ("kube-admin", Some(1_000.0)),
            ("kube-baseline", Some(10_000_000.0)),
            ("t1", Some(100.0))
        ]
    );
    assert_eq!(set.tiers[1].default_action, TierAction::Pass);
    let fc = &set.felix_configs[0].spec;
    assert_eq!(
        fc.failsafe_inbound,
        Some(vec![FailsafePort {
            protocol: FailsafeProtocol::Tcp,
            port: 22,
            net: None
        }])
    );
    assert_eq!(fc.failsafe_outbound, None);
    assert_eq!(fc.iptables_mark_mask, Some(0xffff_0000));
}

#[test]
fn bare_list_and_typed_list() {
    let bare = "- apiVersion: projectcalico.org/v3\n  kind: Profile\n  metadata: {name: a}\n- apiVersion: projectcalico.org/v3\n  kind: Profile\n  metadata: {name: b}\n";
    let l = load(bare);
    assert_eq!(l.set.map(|s| s.profiles.len()), Some(2));
    let typed = "apiVersion: projectcalico.org/v3\nkind: ProfileList\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: Profile\n  metadata: {name: a}\n";
    let l = load(typed);
    assert_eq!(l.set.map(|s| s.profiles.len()), Some(1));
}

#[test]
fn typed_list_items_must_carry_kind_and_api_version() {
    let typed =
        "apiVersion: projectcalico.org/v3\nkind: ProfileList\nitems:\n- metadata: {name: a}\n";
    let l = load(typed);
    assert!(l.set.is_none());
    assert_eq!(l.diagnostics[0].line, 4);
    assert!(
        l.diagnostics[0].message.contains("each item must carry"),
        "{:?}",
        messages(&l)
    );
}

#[test]
fn kubernetes_list_is_rejected() {
    let l = load("apiVersion: v1\nkind: List\nitems: []\n");
    assert!(l.set.is_none());
    assert_eq!((l.diagnostics[0].line, l.diagnostics[0].column), (2, 7));
    assert!(l.diagnostics[0].message.contains("`kind: List`"));
}

#[test]
fn empty_documents_follow_calicoctl() {
    let doc = "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: a}\n";
    // A final `---` (and trailing blank lines) is harmless.
    assert!(load(&format!("{doc}---\n")).set.is_some());
    assert!(load(&format!("{doc}---\n\n\n")).set.is_some());
    assert!(load(&format!("{doc}--- # end of file\n")).set.is_some());
    // An empty middle document and a comment-only final document are errors.
    let l = load(&format!("{doc}---\n---\n{doc}"));
    assert!(l.set.is_none(), "{:?}", messages(&l));
    assert_eq!(l.diagnostics[0].line, 4);
    let l = load(&format!("{doc}---\n# just a note\n"));
    assert!(l.set.is_none());
    assert!(l.diagnostics[0].message.contains("empty document"));
    // A file with nothing in it.
    for empty in ["", "\n\n", "# only a comment\n", "---\n"] {
        let l = load(empty);
        assert!(l.set.is_none(), "{empty:?}");
        assert!(
            l.diagnostics[0].message.contains("no resources"),
            "{empty:?}"
        );
    }
}

#[test]
fn many_empty_documents_are_summarised() {
    let l = load(&"---\n".repeat(10_000));
    assert!(l.set.is_none());
    assert_eq!(l.diagnostics.len(), 21);
    assert_eq!(
        l.diagnostics[0].message,
        "9979 more empty documents not reported"
    );
}

#[test]
fn empty_input_is_a_valid_empty_set() {
    let l = load_sources(&[]);
    let set = l.set.expect("valid");
    assert!(set.policies.is_empty() && set.host_endpoints.is_empty());
    // default, kube-admin, kube-baseline.
    assert_eq!(set.tiers.len(), 3);
}
