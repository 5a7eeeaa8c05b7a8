//! Randomised robustness of the loader: random bytes and randomly mutated valid YAML never
//! panic, and a result is valid exactly when it has no error diagnostic.

use hostfw::policy::load_sources;
use hostfw::source::NamedText;
use proptest::prelude::*;

const SEED_DOC: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-ssh
  labels: {tier: base}
spec:
  order: 10
  selector: "role == 'web' && !has(x)"
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {nets: [198.51.100.0/24], notSelector: "a in {'b',}"}
    destination: {ports: [22, "1000:2000", ssh]}
    notICMP: {type: 8}
  egress:
  - action: Deny
    ipVersion: 6
    destination: {notNets: ["2001:db8::/32"]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h1, labels: {role: web}}
spec: {node: n1, interfaceName: "*", expectedIPs: [203.0.113.1], ports: [{name: ssh, protocol: TCP, port: 22}]}
---
- apiVersion: projectcalico.org/v3
  kind: FelixConfiguration
  metadata: {name: default}
  spec: {failsafeInboundHostPorts: [{protocol: TCP, port: 22, net: 198.51.100.0/24}], iptablesMarkMask: 0xffff0000, reportingInterval: 30s}
"#;

fn load(text: String) -> hostfw::policy::Loaded {
    load_sources(&[NamedText {
        name: "p.yaml".into(),
        text,
    }])
}

fn consistent(l: &hostfw::policy::Loaded) -> bool {
    let has_error = l.diagnostics.iter().any(|d| d.is_error());
    l.set.is_some() != has_error
}

/// One edit of the seed text: insert, delete or replace a short run of characters.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    Replace(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    let chars = prop::sample::select(vec![
        ' ', '\n', '\t', '-', ':', '[', ']', '{', '}', ',', '*', '&', '!', '#', '"', '\'', '|',
        '>', '%', '@', '0', '9', 'a', 'Z', '.', '/', '\u{0}', 'é',
    ]);
    prop_oneof![
        (any::<usize>(), prop::collection::vec(chars.clone(), 1..4))
            .prop_map(|(at, cs)| Edit::Insert(at, cs.into_iter().collect())),
        (any::<usize>(), 1usize..20).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), chars).prop_map(|(at, c)| Edit::Replace(at, c)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match e {
            Edit::Insert(at, s) => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
            Edit::Replace(at, c) => {
                if !chars.is_empty() {
                    let at = at % chars.len();
                    chars[at] = *c;
                }
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn seed_document_is_valid() {
    let l = load(SEED_DOC.to_string());
    assert!(l.set.is_some(), "{:?}", l.diagnostics);
    assert!(l.diagnostics.iter().all(|d| !d.is_error()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in ".{0,400}") {
        let l = load(text);
        prop_assert!(consistent(&l));
    }

    #[test]
    fn random_bytes_as_lossy_text_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let l = load(String::from_utf8_lossy(&bytes).into_owned());
        prop_assert!(consistent(&l));
    }

    #[test]
    fn mutated_yaml_never_panics(edits in prop::collection::vec(edit(), 1..6)) {
        let l = load(apply(SEED_DOC, &edits));
        prop_assert!(consistent(&l));
        // Every diagnostic is located inside the text (or at the file as a whole).
        for d in &l.diagnostics {
            prop_assert!(d.file == "p.yaml");
        }
    }
}
