//! Table-driven tests of the Calico etcd layout: keys, both policy name forms, errors that name
//! the key, and the push/pull encodings.

use super::*;
use crate::policy::{load_sources, parse};

const GNP: &str = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/";

fn gnp_value(name: &str, tier: Option<&str>, annotation: Option<&str>) -> String {
    let tier = tier
        .map(|t| format!("\"tier\":\"{t}\","))
        .unwrap_or_default();
    let annotations = annotation
        .map(|a| {
            format!(
                ",\"annotations\":{{\"team\":\"net\",\"{METADATA_ANNOTATION}\":{}}}",
                json_str(a)
            )
        })
        .unwrap_or_default();
    format!(
        "{{\"kind\":\"GlobalNetworkPolicy\",\"apiVersion\":\"projectcalico.org/v3\",\
         \"metadata\":{{\"name\":\"{name}\",\"uid\":\"u-1\",\
         \"creationTimestamp\":\"2026-01-01T00:00:00Z\"{annotations}}},\
         \"spec\":{{{tier}\"selector\":\"all()\",\"types\":[\"Ingress\"],\
         \"ingress\":[{{\"action\":\"Allow\",\"protocol\":\"TCP\",\
         \"destination\":{{\"ports\":[22]}}}}]}}}}"
    )
}

fn security_tier() -> NamedText {
    NamedText {
        name: "/calico/resources/v3/projectcalico.org/tiers/security".into(),
        text: r#"{"kind":"Tier","apiVersion":"projectcalico.org/v3","metadata":{"name":"security"},"spec":{"order":100}}"#.into(),
    }
}

fn decoded_text(key: &str, value: &str) -> String {
    match decode(key, value.as_bytes()) {
        Ok(Decoded::Resource(s)) => {
            assert_eq!(s.name, key);
            s.text
        }
        other => panic!("{key}: {other:?}"),
    }
}

fn name_of(text: &str) -> String {
    let v: Json = serde_json::from_str(text).expect("json");
    v["metadata"]["name"].as_str().expect("name").to_string()
}

#[test]
fn keys_of_managed_kinds_parse_and_others_do_not() {
    // Managed keys under Calico's v3 prefix: the kind, its plural in the key, the name.
    let managed = [
        ("GlobalNetworkPolicy", "globalnetworkpolicies", "default.a"),
        (
            "StagedGlobalNetworkPolicy",
            "stagedglobalnetworkpolicies",
            "x.y",
        ),
        ("HostEndpoint", "hostendpoints", "h1-eth0"),
        ("GlobalNetworkSet", "globalnetworksets", "ns"),
        ("Profile", "profiles", "p"),
        ("Tier", "tiers", "kube-admin"),
        ("FelixConfiguration", "felixconfigurations", "default"),
        ("ClusterInformation", "clusterinformations", "default"),
    ];
    for (kind, plural, name) in managed {
        let key = format!("{PREFIX}{plural}/{name}");
        let got = parse_key(&key).map(|k| (k.kind, k.name));
        assert_eq!(got, Some((kind, name)), "{key}");
    }
    for key in [
        "/calico/resources/v3/projectcalico.org/networkpolicies/ns/p",
        "/calico/resources/v3/projectcalico.org/ippools/p",
        "/calico/resources/v3/projectcalico.org/tiers/",
        "/calico/v1/policy/tier/default/metadata",
        "calico/resources/v3/projectcalico.org/tiers/a",
    ] {
        assert_eq!(parse_key(key).map(|k| (k.kind, k.name)), None, "{key}");
    }
}

#[test]
fn keys_use_the_tiered_backend_name_for_policies_only() {
    let cases = [
        (
            "GlobalNetworkPolicy",
            "allow-ssh",
            "globalnetworkpolicies/default.allow-ssh",
        ),
        (
            "GlobalNetworkPolicy",
            "security.ssh",
            "globalnetworkpolicies/security.ssh",
        ),
        (
            "StagedGlobalNetworkPolicy",
            "a",
            "stagedglobalnetworkpolicies/default.a",
        ),
        ("HostEndpoint", "web.eth0", "hostendpoints/web.eth0"),
        ("Tier", "security", "tiers/security"),
    ];
    for (kind, name, tail) in cases {
        assert_eq!(
            key(kind, name),
            Some(format!("{PREFIX}{tail}")),
            "{kind} {name}"
        );
    }
    assert_eq!(key("NetworkPolicy", "a"), None);
}

/// One stored policy and the name Calico reads from it.
struct NameCase {
    what: &'static str,
    key_name: &'static str,
    name: &'static str,
    tier: Option<&'static str>,
    annotation: Option<&'static str>,
    want: &'static str,
}

#[test]
fn both_name_forms_give_the_name_felix_reports() {
    let cases: &[NameCase] = &[
        NameCase {
            what: "v3.30+ default tier: the annotation's name",
            key_name: "default.allow-ssh",
            name: "default.allow-ssh",
            tier: None,
            annotation: Some(r#"{"name":"allow-ssh"}"#),
            want: "allow-ssh",
        },
        NameCase {
            what: "v3.29 default tier, tier omitted: prefix stripped",
            key_name: "default.allow-ssh",
            name: "default.allow-ssh",
            tier: None,
            annotation: None,
            want: "allow-ssh",
        },
        NameCase {
            what: "v3.29 default tier, tier named: prefix stripped",
            key_name: "default.allow-ssh",
            name: "default.allow-ssh",
            tier: Some("default"),
            annotation: None,
            want: "allow-ssh",
        },
        NameCase {
            what: "v3.29 other tier: name kept",
            key_name: "security.allow-ssh",
            name: "security.allow-ssh",
            tier: Some("security"),
            annotation: None,
            want: "security.allow-ssh",
        },
        NameCase {
            what: "v3.30+ other tier: the annotation's name",
            key_name: "security.allow-ssh",
            name: "security.allow-ssh",
            tier: Some("security"),
            annotation: Some(r#"{"name":"security.allow-ssh"}"#),
            want: "security.allow-ssh",
        },
        NameCase {
            what: "v3.30+ default tier written with the prefix by the user",
            key_name: "default.allow-ssh",
            name: "default.allow-ssh",
            tier: None,
            annotation: Some(r#"{"name":"default.allow-ssh"}"#),
            want: "default.allow-ssh",
        },
    ];
    for c in cases {
        let (what, annotation) = (c.what, c.annotation);
        let key = format!("{GNP}{}", c.key_name);
        let text = decoded_text(&key, &gnp_value(c.name, c.tier, annotation));
        assert_eq!(name_of(&text), c.want, "{what}");
        assert!(
            !text.contains(METADATA_ANNOTATION),
            "{what}: annotation kept"
        );
        if annotation.is_some() {
            assert!(
                text.contains("\"team\""),
                "{what}: other annotations dropped"
            );
        }
    }
}

#[test]
fn both_name_forms_load_to_the_same_policy_set() {
    let key = format!("{GNP}default.allow-ssh");
    let load = |value: String| {
        let Ok(Decoded::Resource(source)) = decode(&key, value.as_bytes()) else {
            panic!("decode");
        };
        let loaded = load_sources(&[source, security_tier()]);
        assert!(
            loaded.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            loaded.diagnostics
        );
        loaded.set.expect("valid")
    };
    let old = load(gnp_value("default.allow-ssh", None, None));
    let new = load(gnp_value(
        "default.allow-ssh",
        Some("default"),
        Some(r#"{"name":"allow-ssh"}"#),
    ));
    assert_eq!(old.policies.len(), 1);
    assert_eq!(old.policies[0].meta.name, "allow-ssh");
    // The annotation map differs only by `team`, which both carry or lack alike; compare what
    // reaches the kernel: name, tier, selector and rules.
    assert_eq!(old.policies[0].meta.name, new.policies[0].meta.name);
    assert_eq!(old.policies[0].ingress, new.policies[0].ingress);
    assert_eq!(old.policies[0].selector, new.policies[0].selector);
}

#[test]
fn bad_values_are_errors_naming_the_key() {
    let cases: &[(&str, &str, &[u8], &str)] = &[
        ("not JSON", "tiers/a", b"{\"kind\":", "not valid JSON"),
        ("not UTF-8", "tiers/a", b"\xff\xfe", "not UTF-8"),
        ("not an object", "tiers/a", b"[1]", "not a JSON object"),
        (
            "kind does not match the key",
            "tiers/a",
            br#"{"kind":"HostEndpoint","metadata":{"name":"a"}}"#,
            "value's kind is `HostEndpoint`",
        ),
        (
            "name does not match the key",
            "tiers/a",
            br#"{"kind":"Tier","metadata":{"name":"b"}}"#,
            "value's metadata.name is `b`",
        ),
        (
            "annotation is not JSON",
            "globalnetworkpolicies/default.a",
            br#"{"kind":"GlobalNetworkPolicy","metadata":{"name":"default.a","annotations":{"projectcalico.org/metadata":"{"}}}"#,
            "annotation is not valid JSON",
        ),
        (
            "datastoreReady not a boolean",
            "clusterinformations/default",
            br#"{"kind":"ClusterInformation","spec":{"datastoreReady":"no"}}"#,
            "expected true or false",
        ),
    ];
    for (what, tail, value, message) in cases {
        let key = format!("{PREFIX}{tail}");
        let d = decode(&key, value).expect_err(what);
        assert_eq!(d.file, key, "{what}");
        assert!(d.is_error(), "{what}");
        assert!(d.message.contains(message), "{what}: {}", d.message);
    }
}

#[test]
fn an_invalid_object_is_reported_by_the_loader_with_key_kind_and_name() {
    let key = format!("{GNP}default.bad");
    let value = gnp_value("default.bad", None, None).replace("Allow", "Permit");
    let Ok(Decoded::Resource(source)) = decode(&key, value.as_bytes()) else {
        panic!("decode");
    };
    let loaded = load_sources(&[source]);
    assert!(loaded.set.is_none());
    let d = loaded
        .diagnostics
        .iter()
        .find(|d| d.is_error())
        .expect("an error");
    assert_eq!(d.file, key);
    assert_eq!(d.kind.as_deref(), Some("GlobalNetworkPolicy"));
    assert_eq!(d.name.as_deref(), Some("bad"));
    assert!(d.line > 1, "points into the pretty value: {d:?}");
}

#[test]
fn cluster_information_reports_readiness() {
    let key = format!("{PREFIX}clusterinformations/default");
    let cases: &[(&str, Decoded)] = &[
        (
            r#"{"kind":"ClusterInformation","spec":{"datastoreReady":false}}"#,
            Decoded::Ready(false),
        ),
        (
            r#"{"kind":"ClusterInformation","spec":{"datastoreReady":true}}"#,
            Decoded::Ready(true),
        ),
        (
            r#"{"kind":"ClusterInformation","spec":{}}"#,
            Decoded::Ready(true),
        ),
    ];
    for (value, want) in cases {
        assert_eq!(decode(&key, value.as_bytes()).as_ref(), Ok(want), "{value}");
    }
    let other = format!("{PREFIX}clusterinformations/other");
    let v = br#"{"kind":"ClusterInformation","spec":{"datastoreReady":false}}"#;
    assert_eq!(decode(&other, v), Ok(Decoded::Ignored));
}

fn stamp() -> Stamp {
    Stamp {
        uid: "11111111-2222-4333-8444-555555555555".into(),
        creation_timestamp: "2026-01-02T03:04:05Z".into(),
    }
}

fn encode_one(yaml: &str) -> Encoded {
    let (resources, diags) = parse::parse("f.yaml", yaml);
    assert!(diags.is_empty(), "{diags:?}");
    encode(&resources[0].node, &stamp()).expect("managed kind")
}

#[test]
fn encode_writes_what_calicoctl_writes() {
    let e = encode_one(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: allow-ssh\n  \
         uid: ignored\n  labels:\n    version: 1.10\nspec:\n  selector: role == 'web'\n  order: 10\n  \
         ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [22, \"80:90\"]\n",
    );
    assert_eq!(e.key, format!("{GNP}default.allow-ssh"));
    assert_eq!(e.name, "allow-ssh");
    assert_eq!(
        e.value,
        "{\"kind\":\"GlobalNetworkPolicy\",\"apiVersion\":\"projectcalico.org/v3\",\
         \"metadata\":{\"name\":\"default.allow-ssh\",\"uid\":\"11111111-2222-4333-8444-555555555555\",\
         \"creationTimestamp\":\"2026-01-02T03:04:05Z\",\
         \"labels\":{\"version\":\"1.10\",\"projectcalico.org/tier\":\"default\"},\
         \"annotations\":{\"projectcalico.org/metadata\":\"{\\\"name\\\":\\\"allow-ssh\\\"}\"}},\
         \"spec\":{\"selector\":\"role == 'web'\",\"order\":10,\"ingress\":[{\"action\":\"Allow\",\
         \"protocol\":\"TCP\",\"destination\":{\"ports\":[22,\"80:90\"]}}],\"types\":[\"Ingress\"]}}"
    );
    // Read back, it is the policy the file described.
    assert_eq!(name_of(&decoded_text(&e.key, &e.value)), "allow-ssh");
}

#[test]
fn encode_defaults_policy_types_as_calicoctl_does() {
    let cases = [
        ("ingress: [{action: Allow}]", "[\"Ingress\"]"),
        ("egress: [{action: Allow}]", "[\"Egress\"]"),
        (
            "ingress: [{action: Allow}]\n  egress: [{action: Allow}]",
            "[\"Ingress\",\"Egress\"]",
        ),
        ("selector: all()", "[\"Ingress\"]"),
        ("types: [Egress]", "[\"Egress\"]"),
    ];
    for (spec, types) in cases {
        let e = encode_one(&format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  {spec}\n"
        ));
        let v: Json = serde_json::from_str(&e.value).expect("json");
        assert_eq!(v["spec"]["types"].to_string(), types, "{spec}");
    }
}

#[test]
fn plain_scalars_are_typed_and_quoted_ones_are_strings() {
    let cases = [
        ("10", "10"),
        ("-1.5e3", "-1.5e3"),
        ("0x10", "16"),
        ("010", "\"010\""),
        ("true", "true"),
        ("False", "false"),
        ("yes", "\"yes\""),
        ("~", "null"),
        ("'10'", "\"10\""),
        ("90s", "\"90s\""),
    ];
    for (yaml, json) in cases {
        let text = format!("k: {yaml}\n");
        let (docs, diags) = parse::parse("f", &text);
        assert!(diags.is_empty());
        assert_eq!(
            to_json(&docs[0].node),
            format!("{{\"k\":{json}}}"),
            "{yaml}"
        );
    }
}

#[test]
fn export_then_encode_round_trips_to_the_same_value() {
    let values = [
        gnp_value("default.allow-ssh", None, Some(r#"{"name":"allow-ssh"}"#)),
        gnp_value("default.allow-ssh", None, None),
        r#"{"kind":"HostEndpoint","apiVersion":"projectcalico.org/v3","metadata":{"name":"h1-eth0","uid":"x","creationTimestamp":"2026-01-01T00:00:00Z","labels":{"role":"web","on":"yes"}},"spec":{"node":"h1","interfaceName":"eth0","expectedIPs":["198.51.100.1"]}}"#.to_string(),
    ];
    let keys = [
        format!("{GNP}default.allow-ssh"),
        format!("{GNP}default.allow-ssh"),
        format!("{PREFIX}hostendpoints/h1-eth0"),
    ];
    for (key, value) in keys.iter().zip(&values) {
        let exported = export(key, value.as_bytes())
            .expect("export")
            .expect("a resource");
        let yaml = exported.yaml;
        let e = encode_one(&yaml);
        assert_eq!(&e.key, key, "{yaml}");
        let again = export(&e.key, e.value.as_bytes())
            .expect("export")
            .expect("a resource");
        assert_eq!(again.yaml, yaml, "pull → push → pull is byte-identical");
        assert_eq!(again.file_name, exported.file_name);
    }
}

#[test]
fn yaml_scalars_are_plain_only_when_unambiguous() {
    let cases = [
        ("eth0", "eth0"),
        ("projectcalico.org/tier", "projectcalico.org/tier"),
        ("on", "\"on\""),
        ("No", "\"No\""),
        ("10", "\"10\""),
        ("role == 'web'", "\"role == 'web'\""),
        ("", "\"\""),
        ("a\"b", "\"a\\\"b\""),
    ];
    for (s, want) in cases {
        assert_eq!(yaml_scalar(s), want, "{s}");
    }
}

#[test]
fn same_value_ignores_key_order() {
    assert!(same_value(br#"{"a":1,"b":[2]}"#, br#"{ "b":[2], "a":1 }"#));
    assert!(!same_value(br#"{"a":1}"#, br#"{"a":2}"#));
}
