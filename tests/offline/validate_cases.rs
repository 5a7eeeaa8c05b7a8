//! Table-driven accept/reject cases for every validation rule of calicoctl v3.32.1 that applies to
//! the six kinds (docs/policy-format.md, "Validation choices per kind"), plus hostfw's own
//! decisions (YAML 1.1 scalars, ignored kinds and fields). Each reject case names the dotted
//! field path and a fragment of the message; expectations come from Calico v3.32.1 semantics,
//! not from this implementation's output.

use hostfw::diag::{Diagnostic, Severity};
use hostfw::policy::load_sources;
use hostfw::source::NamedText;

/// What a case expects.
#[derive(Debug)]
enum Want {
    /// Valid, with no diagnostic at all.
    Pass,
    /// Valid, with a warning on this field containing this text.
    Warn(&'static str, &'static str),
    /// Invalid: an error on this field (None = file level) containing this text.
    Fail(Option<&'static str>, &'static str),
}
use Want::*;

fn e(field: &'static str, msg: &'static str) -> Want {
    Fail(Some(field), msg)
}

const API: &str = "apiVersion: projectcalico.org/v3";

fn res(kind: &str, name: &str, spec: &str) -> String {
    format!("{API}\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}
fn gnp(spec: &str) -> String {
    res("GlobalNetworkPolicy", "p", spec)
}
/// A policy with one ingress rule (fields below are under `spec.ingress[0]`).
fn rule(r: &str) -> String {
    gnp(&format!("{{ingress: [{r}]}}"))
}
fn hep(spec: &str) -> String {
    res("HostEndpoint", "h", spec)
}
fn felix(spec: &str) -> String {
    res("FelixConfiguration", "default", spec)
}
fn meta(meta: &str) -> String {
    format!("{API}\nkind: Profile\nmetadata: {meta}\n")
}

fn run(name: &str, text: &str, want: &Want) -> Result<(), String> {
    let loaded = load_sources(&[NamedText {
        name: "case.yaml".into(),
        text: text.into(),
    }]);
    let show = |d: &[Diagnostic]| d.iter().map(|d| format!("\n    {d}")).collect::<String>();
    let errors: Vec<&Diagnostic> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
    let fail = |why: &str| {
        Result::Err(format!(
            "case `{name}`: {why}; want {want:?}; got:{}\n  input:\n{text}",
            show(&loaded.diagnostics)
        ))
    };
    match want {
        Pass => {
            if !loaded.diagnostics.is_empty() || loaded.set.is_none() {
                return fail("expected no diagnostics");
            }
        }
        Warn(field, msg) => {
            if !errors.is_empty() || loaded.set.is_none() {
                return fail("expected valid");
            }
            let hit = loaded.diagnostics.iter().any(|d| {
                d.severity == Severity::Warning
                    && d.field.as_deref() == Some(*field)
                    && d.message.contains(msg)
            });
            if !hit {
                return fail("expected warning missing");
            }
        }
        Fail(field, msg) => {
            if loaded.set.is_some() {
                return fail("expected the set to be rejected");
            }
            let hit = errors
                .iter()
                .any(|d| d.field.as_deref() == *field && d.message.contains(msg));
            if !hit {
                return fail("expected error missing");
            }
        }
    }
    std::result::Result::Ok(())
}

fn check_all(cases: Vec<(&str, String, Want)>) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(n, t, w)| run(n, t, w).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn file_and_document_level() {
    let prof = |rest: &str| format!("{API}\nkind: Profile\nmetadata: {{name: a}}\n{rest}");
    check_all(vec![
        // 1. YAML syntax errors, with file-level location.
        ("unquoted star", hep("{node: n1, interfaceName: *}"), Fail(None, "quote the value")),
        ("bad indentation", format!("{API}\nkind: Profile\nmetadata:\n  name: a\n   x: 1\n"), Fail(None, "YAML syntax error")),
        ("tab indentation", format!("{API}\nkind: Profile\nmetadata:\n\tname: a\n"), Fail(None, "YAML syntax error")),
        ("duplicate key", format!("{API}\nkind: Profile\nkind: Profile\nmetadata: {{name: a}}\n"), Fail(None, "duplicate key `kind`")),
        ("duplicate nested key", hep("{node: n1, node: m, interfaceName: eth0}"), Fail(None, "duplicate key `node`")),
        ("unquoted bang selector", gnp("{selector: !has(a)}"), Fail(None, "quote it")),
        ("unclosed flow", gnp("{selector: a"), Fail(None, "YAML syntax error")),
        // 2. No kind.
        ("no kind", format!("{API}\nmetadata: {{name: a}}\n"), e("kind", "`kind` is required")),
        ("kind wrong case key", format!("{API}\nKind: Profile\nmetadata: {{name: a}}\n"), e("kind", "`kind` is required")),
        // 3. apiVersion and kind.
        ("api v1", "apiVersion: v1\nkind: Profile\nmetadata: {name: a}\n".into(), e("apiVersion", "must be `projectcalico.org/v3`")),
        ("api v2", "apiVersion: projectcalico.org/v2\nkind: Profile\nmetadata: {name: a}\n".into(), e("apiVersion", "must be")),
        ("api crd group", "apiVersion: crd.projectcalico.org/v1\nkind: Profile\nmetadata: {name: a}\n".into(), e("apiVersion", "CRD group")),
        ("api missing", "kind: Profile\nmetadata: {name: a}\n".into(), e("apiVersion", "must be")),
        ("kind lowercase", format!("{API}\nkind: profile\nmetadata: {{name: a}}\n"), e("kind", "case-sensitive: write `Profile`")),
        ("kind camel", format!("{API}\nkind: hostEndpoint\nmetadata: {{name: a}}\n"), e("kind", "write `HostEndpoint`")),
        ("kind v1 name", format!("{API}\nkind: policy\nmetadata: {{name: a}}\n"), e("kind", "unknown kind `policy`")),
        ("kind typo", format!("{API}\nkind: GlobalNetworkPolcy\nmetadata: {{name: a}}\n"), e("kind", "did you mean `GlobalNetworkPolicy`")),
        ("kind List", "apiVersion: v1\nkind: List\nitems: []\n".into(), Fail(None, "`kind: List`")),
        // Namespaced kinds are errors; cluster plumbing is a warning.
        ("NetworkPolicy", res("NetworkPolicy", "a", "{}"), e("kind", "namespaced")),
        ("NetworkSet", res("NetworkSet", "a", "{}"), e("kind", "namespaced")),
        ("StagedNetworkPolicy", res("StagedNetworkPolicy", "a", "{}"), e("kind", "namespaced")),
        ("StagedKubernetesNetworkPolicy", res("StagedKubernetesNetworkPolicy", "a", "{}"), e("kind", "namespaced")),
        ("IPPool", res("IPPool", "a", "{cidr: 10.0.0.0/8}"), Warn("kind", "ignored")),
        ("BGPConfiguration", res("BGPConfiguration", "default", "{}"), Warn("kind", "ignored")),
        ("BGPPeer", res("BGPPeer", "a", "{}"), Warn("kind", "ignored")),
        ("BGPFilter", res("BGPFilter", "a", "{}"), Warn("kind", "ignored")),
        ("ClusterInformation", res("ClusterInformation", "default", "{}"), Warn("kind", "ignored")),
        ("Node", res("Node", "n1", "{}"), Warn("kind", "ignored")),
        ("KubeControllersConfiguration", res("KubeControllersConfiguration", "default", "{}"), Warn("kind", "ignored")),
        ("IPReservation", res("IPReservation", "a", "{}"), Warn("kind", "ignored")),
        // 4. Unknown fields at every depth, with a hint for near misses.
        ("top status", prof("status: {}\n"), Fail(None, "unknown field `status`")),
        ("top typo", prof("spce: {}\n"), Fail(None, "did you mean `spec`")),
        ("metadata unknown", meta("{name: a, lables: {a: b}}"), e("metadata", "did you mean `labels`")),
        ("hep v1 interface", hep("{node: n1, interface: eth0}"), e("spec", "unknown field `interface`; did you mean `interfaceName`")),
        ("hep status", format!("{}status: {{}}\n", hep("{node: n1, interfaceName: eth0}")), Fail(None, "unknown field `status`")),
        ("gnp unknown", gnp("{ordr: 1}"), e("spec", "did you mean `order`")),
        ("rule unknown", rule("{actoin: Allow}"), e("spec.ingress[0]", "did you mean `action`")),
        ("entity unknown", rule("{action: Allow, protocol: TCP, destination: {port: [80]}}"), e("spec.ingress[0].destination", "did you mean `ports`")),
        ("icmp unknown", rule("{action: Allow, protocol: ICMP, icmp: {typ: 8}}"), e("spec.ingress[0].icmp", "did you mean `type`")),
        ("rule metadata unknown", rule("{action: Allow, metadata: {labels: {a: b}}}"), e("spec.ingress[0].metadata", "unknown field `labels`")),
        ("endpoint port unknown", hep("{node: n1, interfaceName: eth0, ports: [{name: web, protocol: TCP, port: 80, portt: 1}]}"), e("spec.ports[0]", "unknown field `portt`")),
        ("failsafe unknown", felix("{failsafeInboundHostPorts: [{proto: TCP, port: 22}]}"), e("spec.failsafeInboundHostPorts[0]", "did you mean `protocol`")),
        ("felix typo", felix("{ipv6Suport: false}"), e("spec", "did you mean `ipv6Support`")),
        ("felix typo of ignored", felix("{ipipEnabld: true}"), e("spec", "did you mean `ipipEnabled`")),
        ("felix v1 config name", felix("{iptablesPostWriteCheckIntervalSec: 1}"), e("spec", "did you mean `iptablesPostWriteCheckInterval")),
        ("felix design's Secs name", felix("{iptablesPostWriteCheckIntervalSecs: 1.5}"), Warn("spec.iptablesPostWriteCheckIntervalSecs", "accepted as iptablesPostWriteCheckInterval: 1.5s")),
        ("felix Secs and duration", felix("{iptablesPostWriteCheckIntervalSecs: 1, iptablesPostWriteCheckInterval: 1s}"), e("spec.iptablesPostWriteCheckIntervalSecs", "not both")),
        ("felix Secs negative", felix("{iptablesPostWriteCheckIntervalSecs: -1}"), e("spec.iptablesPostWriteCheckIntervalSecs", "0 or more")),
        ("gns unknown", res("GlobalNetworkSet", "s", "{nets: [], allowedEgressDomains: [a.com]}"), e("spec", "unknown field")),
        ("profile unknown", res("Profile", "a", "{order: 1}"), e("spec", "unknown field `order`")),
        ("tier unknown", res("Tier", "t", "{order: 1, action: Pass}"), e("spec", "unknown field `action`")),
        // Field names below the top level match in any case (warning with the canonical name).
        ("case egress", res("Profile", "a", "{Egress: [{action: Allow}]}"), Warn("spec.egress", "canonical spelling is `egress`")),
        ("case interfaceName", hep("{node: n1, InterfaceName: eth0}"), Warn("spec.interfaceName", "`interfaceName`")),
        ("case ICMP", rule("{action: Allow, protocol: ICMP, ICMP: {type: 8}}"), Warn("spec.ingress[0].icmp", "`icmp`")),
        ("case metadata", format!("{API}\nkind: Profile\nMetadata: {{name: a}}\n"), Warn("metadata", "`metadata`")),
        ("case twice", res("Profile", "a", "{egress: [], Egress: []}"), e("spec.egress", "repeats field `egress`")),
        // 5. Wrong types.
        ("string for bool", gnp("{doNotTrack: \"true\", applyOnForward: true}"), e("spec.doNotTrack", "quoted string")),
        ("list for bool", gnp("{applyOnForward: [true]}"), e("spec.applyOnForward", "expected true or false")),
        ("port above 65535", rule("{action: Allow, protocol: TCP, destination: {ports: [65536]}}"), e("spec.ingress[0].destination.ports[0]", "out of range")),
        ("protocol above 255", rule("{action: Allow, protocol: 256}"), e("spec.ingress[0].protocol", "out of range")),
        ("range min above max", rule("{action: Allow, protocol: TCP, destination: {ports: [\"90:80\"]}}"), e("spec.ingress[0].destination.ports[0]", "minimum above its maximum")),
        ("spec list", res("Profile", "a", "[]"), e("spec", "expected a mapping")),
        ("order string", gnp("{order: \"10\"}"), e("spec.order", "quoted string")),
        ("order word", gnp("{order: first}"), e("spec.order", "expected a number")),
        ("ingress mapping", gnp("{ingress: {action: Allow}}"), e("spec.ingress", "expected a list")),
        ("document scalar", "just text\n".into(), Fail(None, "found a scalar")),
        ("top list of scalars", "- a\n- b\n".into(), Fail(None, "must hold resources")),
        // 6. Namespace on a cluster-scoped kind.
        ("namespace gnp", format!("{API}\nkind: GlobalNetworkPolicy\nmetadata: {{name: a, namespace: default}}\n"), e("metadata.namespace", "cluster-scoped")),
        ("namespace hep", format!("{API}\nkind: HostEndpoint\nmetadata: {{name: a, namespace: x}}\nspec: {{node: n1, interfaceName: eth0}}\n"), e("metadata.namespace", "namespace should not be specified")),
        // Other ObjectMeta fields are accepted and dropped, as calicoctl does.
        ("objectmeta extras", meta("{name: a, uid: x, resourceVersion: \"1\", creationTimestamp: null, generation: 2}"), Pass),
    ]);
}

#[test]
fn metadata_rules() {
    let long_name = format!("{{name: {}}}", "a".repeat(254));
    let max_name = format!("{{name: {}}}", "a".repeat(253));
    let long_label = format!("{{name: a, labels: {{{}: v}}}}", "k".repeat(64));
    let long_value = format!("{{name: a, labels: {{k: {}}}}}", "v".repeat(64));
    let max_value = format!("{{name: a, labels: {{k: {}}}}}", "v".repeat(63));
    let big_annotation = format!(
        "{{name: a, annotations: {{k: \"{}\"}}}}",
        "x".repeat(262_144)
    );
    let ok_annotation = format!(
        "{{name: a, annotations: {{k: \"{}\"}}}}",
        "x".repeat(262_143)
    );
    check_all(vec![
        // 7. Names.
        ("name ok", meta("{name: a.b-c.d1}"), Pass),
        ("name missing", meta("{labels: {a: b}}"), e("metadata.name", "required")),
        ("no metadata", format!("{API}\nkind: Profile\n"), e("metadata.name", "required")),
        ("name empty", meta("{name: \"\"}"), e("metadata.name", "must not be empty")),
        ("name upper", meta("{name: Web}"), e("metadata.name", "not a valid name")),
        ("name underscore", meta("{name: a_b}"), e("metadata.name", "not a valid name")),
        ("name leading dash", meta("{name: -a}"), e("metadata.name", "not a valid name")),
        ("name trailing dash", meta("{name: a-}"), e("metadata.name", "not a valid name")),
        ("name leading dot", meta("{name: .a}"), e("metadata.name", "not a valid name")),
        ("name trailing dot", meta("{name: a.}"), e("metadata.name", "not a valid name")),
        ("name empty segment", meta("{name: a..b}"), e("metadata.name", "not a valid name")),
        ("name space", meta("{name: \"a b\"}"), e("metadata.name", "not a valid name")),
        ("name too long", meta(&long_name), e("metadata.name", "longer than 253")),
        ("name max length", meta(&max_name), Pass),
        ("name number", meta("{name: 1.10}"), e("metadata.name", "quote it")),
        ("name list", meta("{name: [a]}"), e("metadata.name", "expected a string")),
        // 8. GNP names: one label, optionally one label and a dot before it.
        ("gnp name two labels", res("GlobalNetworkPolicy", "default.allow-ssh", "{}"), Pass),
        ("gnp name foo.bar", res("GlobalNetworkPolicy", "foo.bar", "{}"), Pass),
        ("gnp name three labels", res("GlobalNetworkPolicy", "a.b.c", "{}"), e("metadata.name", "not a valid GlobalNetworkPolicy name")),
        ("gnp name knp", res("GlobalNetworkPolicy", "knp.default.x", "{}"), e("metadata.name", "GlobalNetworkPolicy name")),
        // 9. Labels.
        ("label ok", meta("{name: a, labels: {app: web, example.com/Tier_1: A.b-c}}"), Pass),
        ("label empty value", meta("{name: a, labels: {k: \"\"}}"), Pass),
        ("label null value", meta("{name: a, labels: {k: }}"), Pass),
        ("label key two slashes", meta("{name: a, labels: {a/b/c: v}}"), e("metadata.labels[a/b/c]", "label key")),
        ("label key upper prefix", meta("{name: a, labels: {Example.com/x: v}}"), e("metadata.labels[Example.com/x]", "prefix")),
        ("label key empty name", meta("{name: a, labels: {example.com/: v}}"), e("metadata.labels[example.com/]", "label key")),
        ("label key leading dash", meta("{name: a, labels: {-k: v}}"), e("metadata.labels[-k]", "label key")),
        ("label key too long", meta(&long_label), e("metadata.labels[kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk]", "label key")),
        ("label value space", meta("{name: a, labels: {k: \"a b\"}}"), e("metadata.labels[k]", "label value")),
        ("label value slash", meta("{name: a, labels: {k: a/b}}"), e("metadata.labels[k]", "label value")),
        ("label value colon", meta("{name: a, labels: {k: \"a:b\"}}"), e("metadata.labels[k]", "label value")),
        ("label value at", meta("{name: a, labels: {k: a@b}}"), e("metadata.labels[k]", "label value")),
        ("label value trailing dot", meta("{name: a, labels: {k: a.}}"), e("metadata.labels[k]", "label value")),
        ("label value too long", meta(&long_value), e("metadata.labels[k]", "label value")),
        ("label value max", meta(&max_value), Pass),
        ("label value yes", meta("{name: a, labels: {k: yes}}"), e("metadata.labels[k]", "quote it")),
        ("label value quoted yes", meta("{name: a, labels: {k: \"yes\"}}"), Pass),
        ("label value true", meta("{name: a, labels: {k: true}}"), Pass),
        ("label value 1.10", meta("{name: a, labels: {k: 1.10}}"), e("metadata.labels[k]", "YAML 1.1")),
        ("labels list", meta("{name: a, labels: [a]}"), e("metadata.labels", "expected a mapping")),
        // 10. Annotations.
        ("annotation ok", meta("{name: a, annotations: {Example.COM/Key: \"any value: at all\"}}"), Pass),
        ("annotation bad key", meta("{name: a, annotations: {\"a b\": x}}"), e("metadata.annotations[a b]", "annotation key")),
        ("annotation two slashes", meta("{name: a, annotations: {a/b/c: x}}"), e("metadata.annotations[a/b/c]", "annotation key")),
        ("annotations too big", meta(&big_annotation), e("metadata.annotations", "256")),
        ("annotations at limit", meta(&ok_annotation), Pass),
        ("rule annotation bad key", rule("{action: Allow, metadata: {annotations: {\"x y\": z}}}"), e("spec.ingress[0].metadata.annotations[x y]", "annotation key")),
        ("rule annotation ok", rule("{action: Allow, metadata: {annotations: {from: frontend}}}"), Pass),
        // 11. GlobalNetworkSet namespace label.
        ("gns namespace label", format!("{API}\nkind: GlobalNetworkSet\nmetadata: {{name: s, labels: {{projectcalico.org/namespace: x}}}}\n"), e("metadata.labels[projectcalico.org/namespace]", "reserved")),
        ("hep namespace label allowed", format!("{API}\nkind: HostEndpoint\nmetadata: {{name: h, labels: {{projectcalico.org/namespace: x}}}}\nspec: {{node: n1, interfaceName: eth0}}\n"), Pass),
    ]);
}

#[test]
fn host_endpoint_rules() {
    check_all(vec![
        ("hep full", hep("{node: n1, interfaceName: eth0, expectedIPs: [198.51.100.1, \"2001:db8::1\"], profiles: [p1, kns.default], ports: [{name: web, protocol: TCP, port: 80}, {name: web, protocol: UDP, port: 80}, {name: s, protocol: SCTP, port: 9}, {name: n6, protocol: 6, port: 1}]}"), Pass),
        ("hep only expectedIPs", hep("{node: n1, expectedIPs: [198.51.100.1]}"), Pass),
        ("hep star with ips", hep("{node: n1, interfaceName: \"*\", expectedIPs: [198.51.100.1]}"), Pass),
        ("hep star", hep("{node: n1, interfaceName: \"*\"}"), Pass),
        ("hep missing profile ok", hep("{node: n1, interfaceName: eth0, profiles: [does-not-exist]}"), Pass),
        // 12. node.
        ("node missing", hep("{interfaceName: eth0}"), e("spec.node", "required")),
        ("node empty", hep("{node: \"\", interfaceName: eth0}"), e("spec.node", "invalid node name")),
        ("node upper", hep("{node: Host1, interfaceName: eth0}"), e("spec.node", "invalid node name")),
        ("node underscore", hep("{node: host_1, interfaceName: eth0}"), e("spec.node", "invalid node name")),
        ("no spec", format!("{API}\nkind: HostEndpoint\nmetadata: {{name: h}}\n"), e("spec", "spec is required")),
        // 13. interfaceName or expectedIPs.
        ("neither", hep("{node: n1}"), e("spec", "needs interfaceName or expectedIPs")),
        ("both empty", hep("{node: n1, interfaceName: \"\", expectedIPs: []}"), e("spec", "needs interfaceName or expectedIPs")),
        // 14. interfaceName shape.
        ("iface too long", hep("{node: n1, interfaceName: wibblywobblyeth0}"), e("spec.interfaceName", "is invalid")),
        ("iface 15", hep("{node: n1, interfaceName: abcdefghijklmno}"), Pass),
        ("iface colon", hep("{node: n1, interfaceName: \"eth0:1\"}"), e("spec.interfaceName", "is invalid")),
        ("iface at", hep("{node: n1, interfaceName: eth0@if2}"), e("spec.interfaceName", "is invalid")),
        ("iface prefix wildcard", hep("{node: n1, interfaceName: \"eth*\"}"), e("spec.interfaceName", "is invalid")),
        ("iface dots and underscores", hep("{node: n1, interfaceName: br_0.10-x}"), Pass),
        // 15. expectedIPs are plain addresses.
        ("ip cidr", hep("{node: n1, expectedIPs: [198.51.100.0/24]}"), e("spec.expectedIPs[0]", "not CIDRs")),
        ("ip hostname", hep("{node: n1, expectedIPs: [myhost]}"), e("spec.expectedIPs[0]", "not an IP address")),
        ("ip placeholder", hep("{node: n1, expectedIPs: [INSERT_IP_HERE]}"), e("spec.expectedIPs[0]", "not an IP address")),
        ("ip leading zero", hep("{node: n1, expectedIPs: [198.051.100.1]}"), e("spec.expectedIPs[0]", "not an IP address")),
        ("ip second bad", hep("{node: n1, expectedIPs: [198.51.100.1, 1.2.3]}"), e("spec.expectedIPs[1]", "not an IP address")),
        ("ips not list", hep("{node: n1, expectedIPs: 198.51.100.1}"), e("spec.expectedIPs", "expected a list")),
        // 16. profiles.
        ("profile upper", hep("{node: n1, interfaceName: eth0, profiles: [Web]}"), e("spec.profiles[0]", "invalid profile name")),
        ("profile empty", hep("{node: n1, interfaceName: eth0, profiles: [\"\"]}"), e("spec.profiles[0]", "invalid profile name")),
        // 17. Named ports.
        ("port name upper", hep("{node: n1, interfaceName: eth0, ports: [{name: HTTP, protocol: TCP, port: 80}]}"), e("spec.ports[0].name", "not a valid port name")),
        ("port name long", hep("{node: n1, interfaceName: eth0, ports: [{name: abcdefghijklmnop, protocol: TCP, port: 80}]}"), e("spec.ports[0].name", "not a valid port name")),
        ("port name digits", hep("{node: n1, interfaceName: eth0, ports: [{name: \"8080\", protocol: TCP, port: 80}]}"), e("spec.ports[0].name", "not a valid port name")),
        ("port name double dash", hep("{node: n1, interfaceName: eth0, ports: [{name: a--b, protocol: TCP, port: 80}]}"), e("spec.ports[0].name", "not a valid port name")),
        ("port name missing", hep("{node: n1, interfaceName: eth0, ports: [{protocol: TCP, port: 80}]}"), e("spec.ports[0].name", "required")),
        ("port protocol missing", hep("{node: n1, interfaceName: eth0, ports: [{name: web, port: 80}]}"), e("spec.ports[0].protocol", "required")),
        ("port protocol icmp", hep("{node: n1, interfaceName: eth0, ports: [{name: web, protocol: ICMP, port: 80}]}"), e("spec.ports[0].protocol", "TCP, UDP or SCTP")),
        ("port protocol udplite", hep("{node: n1, interfaceName: eth0, ports: [{name: web, protocol: UDPLite, port: 80}]}"), e("spec.ports[0].protocol", "TCP, UDP or SCTP")),
        ("port protocol 1", hep("{node: n1, interfaceName: eth0, ports: [{name: web, protocol: 1, port: 80}]}"), e("spec.ports[0].protocol", "TCP, UDP or SCTP")),
        ("port protocol lowercase", hep("{node: n1, interfaceName: eth0, ports: [{name: web, protocol: tcp, port: 80}]}"), e("spec.ports[0].protocol", "case-sensitive")),
        ("port zero", hep("{node: n1, interfaceName: eth0, ports: [{name: web, protocol: TCP, port: 0}]}"), e("spec.ports[0].port", "port 0")),
        ("port too big", hep("{node: n1, interfaceName: eth0, ports: [{name: web, protocol: TCP, port: 65536}]}"), e("spec.ports[0].port", "out of range")),
        ("port quoted", hep("{node: n1, interfaceName: eth0, ports: [{name: web, protocol: TCP, port: \"80\"}]}"), e("spec.ports[0].port", "quoted string")),
        ("port missing", hep("{node: n1, interfaceName: eth0, ports: [{name: web, protocol: TCP}]}"), e("spec.ports[0].port", "required")),
    ]);
}

#[test]
fn global_network_policy_spec_rules() {
    let tier =
        format!("{API}\nkind: Tier\nmetadata: {{name: security}}\nspec: {{order: 100}}\n---\n");
    check_all(vec![
        // Accept-side facts.
        ("empty spec", gnp("{}"), Pass),
        ("no spec", format!("{API}\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\n"), Pass),
        ("empty selector", gnp("{selector: \"\"}"), Pass),
        ("types empty", gnp("{types: []}"), Pass),
        ("order negative fraction", gnp("{order: -1.5}"), Pass),
        ("order hex", gnp("{order: 0x10}"), Pass),
        ("order exponent", gnp("{order: 1e3}"), Pass),
        ("both types", gnp("{types: [Ingress, Egress]}"), Pass),
        ("egress only", gnp("{types: [Egress], egress: [{action: Allow}]}"), Pass),
        ("tier default", gnp("{tier: default}"), Pass),
        ("tier kube-admin built in", gnp("{tier: kube-admin}"), Pass),
        ("tier kube-baseline built in", gnp("{tier: kube-baseline}"), Pass),
        ("tier defined", format!("{tier}{}", gnp("{tier: security}")), Pass),
        ("dnt forward", gnp("{doNotTrack: true, applyOnForward: true, ingress: [{action: Deny}], egress: [{action: Deny}]}"), Pass),
        ("prednat forward ingress", gnp("{preDNAT: true, applyOnForward: true, ingress: [{action: Deny}]}"), Pass),
        ("performance hint", gnp("{performanceHints: [AssumeNeededOnEveryNode]}"), Pass),
        ("empty namespaceSelector", gnp("{namespaceSelector: \"\"}"), Pass),
        // 18. types.
        ("types lowercase", gnp("{types: [ingress]}"), e("spec.types[0]", "case-sensitive")),
        ("types other", gnp("{types: [Forward]}"), e("spec.types[0]", "Ingress or Egress")),
        ("types duplicate", gnp("{types: [Ingress, Ingress]}"), e("spec.types[1]", "listed twice")),
        ("types three", gnp("{types: [Ingress, Egress, Ingress]}"), e("spec.types[2]", "listed twice")),
        ("types scalar", gnp("{types: Ingress}"), e("spec.types", "expected a list")),
        // 19-22. preDNAT / doNotTrack / applyOnForward.
        ("prednat and dnt", gnp("{preDNAT: true, doNotTrack: true, applyOnForward: true}"), e("spec.preDNAT", "cannot both be true")),
        ("prednat egress rules", gnp("{preDNAT: true, applyOnForward: true, egress: [{action: Allow}]}"), e("spec.egress", "cannot have egress rules")),
        ("prednat egress type", gnp("{preDNAT: true, applyOnForward: true, types: [Egress]}"), e("spec.types", "cannot have type Egress")),
        ("prednat both types", gnp("{preDNAT: true, applyOnForward: true, types: [Ingress, Egress]}"), e("spec.types", "cannot have type Egress")),
        ("prednat no forward", gnp("{preDNAT: true, ingress: [{action: Deny}]}"), e("spec.preDNAT", "requires applyOnForward")),
        ("prednat forward false", gnp("{preDNAT: true, applyOnForward: false}"), e("spec.preDNAT", "requires applyOnForward")),
        ("dnt no forward", gnp("{doNotTrack: true}"), e("spec.doNotTrack", "requires applyOnForward")),
        ("bool yes", gnp("{applyOnForward: yes}"), e("spec.applyOnForward", "YAML 1.1 boolean")),
        ("bool on", gnp("{applyOnForward: on}"), e("spec.applyOnForward", "write `true`")),
        ("bool no", gnp("{doNotTrack: no}"), e("spec.doNotTrack", "write `false`")),
        ("bool True", gnp("{applyOnForward: True}"), Pass),
        // 23-24. Selectors.
        ("selector bad", gnp("{selector: \"role ==\"}"), e("spec.selector", "invalid selector")),
        ("selector global", gnp("{selector: \"global()\"}"), e("spec.selector", "global()")),
        ("selector global inside", gnp("{selector: \"has(a) && global()\"}"), e("spec.selector", "global()")),
        ("selector newline", gnp("{selector: \"has(a)\\n\"}"), e("spec.selector", "invalid selector")),
        ("selector block scalar", format!("{API}\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  selector: |\n    has(a)\n"), e("spec.selector", "invalid selector")),
        ("selector not string", gnp("{selector: [a]}"), e("spec.selector", "expected a string")),
        ("namespaceSelector", gnp("{namespaceSelector: \"has(a)\"}"), e("spec.namespaceSelector", "Kubernetes")),
        ("serviceAccountSelector", gnp("{serviceAccountSelector: \"all()\"}"), e("spec.serviceAccountSelector", "Kubernetes")),
        // 26. performanceHints.
        ("hint unknown", gnp("{performanceHints: [Fast]}"), e("spec.performanceHints[0]", "only hint")),
        ("hint duplicate", gnp("{performanceHints: [AssumeNeededOnEveryNode, AssumeNeededOnEveryNode]}"), e("spec.performanceHints[1]", "twice")),
        // 27. Tiers.
        ("tier missing", gnp("{tier: security}"), e("spec.tier", "does not exist")),
        ("tier invalid", gnp("{tier: Security}"), e("spec.tier", "not a valid tier name")),
        // 28. L7 / Kubernetes-only rule fields.
        ("http", rule("{action: Allow, http: {methods: [GET]}}"), e("spec.ingress[0].http", "application-layer")),
        ("services", rule("{action: Allow, destination: {services: {name: a, namespace: b}}}"), e("spec.ingress[0].destination.services", "Kubernetes Services")),
        ("serviceAccounts", rule("{action: Allow, source: {serviceAccounts: {names: [a]}}}"), e("spec.ingress[0].source.serviceAccounts", "service account")),
        ("rule namespaceSelector global", rule("{action: Allow, source: {namespaceSelector: \"global()\"}}"), Pass),
        ("rule namespaceSelector global spaced", rule("{action: Allow, destination: {namespaceSelector: \" global() \", selector: \"a == 'b'\"}}"), Pass),
        ("rule namespaceSelector all", rule("{action: Allow, source: {namespaceSelector: \"all()\"}}"), e("spec.ingress[0].source.namespaceSelector", "only `global()`")),
        ("rule namespaceSelector global and more", rule("{action: Allow, source: {namespaceSelector: \"global() && has(a)\"}}"), e("spec.ingress[0].source.namespaceSelector", "only `global()`")),
        ("egress http", gnp("{egress: [{action: Allow, http: {paths: [{exact: /}]}}]}"), e("spec.egress[0].http", "application-layer")),
    ]);
}

#[test]
fn rule_rules() {
    let r = |x: &str| rule(x);
    check_all(vec![
        // Accept-side facts.
        ("only action", r("{action: Allow}"), Pass),
        ("all actions", gnp("{ingress: [{action: Allow}, {action: Deny}, {action: Log}, {action: Pass}]}"), Pass),
        ("notICMP without protocol", r("{action: Deny, notICMP: {type: 8}}"), Pass),
        ("named port without protocol", r("{action: Allow, destination: {ports: [http]}}"), Pass),
        ("empty ports without protocol", r("{action: Allow, destination: {ports: []}}"), Pass),
        ("ports everything", r("{action: Allow, protocol: TCP, destination: {ports: [80, \"81\", \"1000:2000\", 3000:3001, http, 0x50]}}"), Pass),
        ("ports udp sctp numbers", gnp("{ingress: [{action: Allow, protocol: UDP, destination: {ports: [53]}}, {action: Allow, protocol: SCTP, source: {notPorts: [9]}}, {action: Allow, protocol: 6, destination: {ports: [1]}}, {action: Allow, protocol: \"17\", destination: {ports: [1]}}, {action: Allow, protocol: 132, destination: {ports: [1]}}]}"), Pass),
        ("icmp types", gnp("{ingress: [{action: Allow, protocol: ICMP, icmp: {type: 0, code: 0}}, {action: Allow, protocol: ICMPv6, icmp: {type: 254, code: 255}}]}"), Pass),
        ("ipVersion families", gnp("{ingress: [{action: Allow, ipVersion: 4, source: {nets: [198.51.100.0/24]}}, {action: Allow, ipVersion: 6, source: {nets: [\"2001:db8::/32\"]}, protocol: ICMPv6}]}"), Pass),
        ("nets all four lists v4", r("{action: Allow, source: {nets: [10.0.0.0/8], notNets: [10.1.0.0/16]}, destination: {nets: [192.168.0.0/16], notNets: [192.168.1.0/24]}}"), Pass),
        ("selectors", r("{action: Allow, source: {selector: \"role == 'db'\", notSelector: \"has(bad)\"}, destination: {selector: \"all()\"}}"), Pass),
        ("empty rule selector", r("{action: Allow, source: {selector: \"\"}}"), Pass),
        ("trailing comma set", r("{action: Allow, source: {selector: \"a in {'x', 'y',}\"}}"), Pass),
        ("notNets /0 other", r("{action: Allow, source: {notNets: [0.0.0.0/1]}}"), Pass),
        // 29. action.
        ("action missing", r("{protocol: TCP}"), e("spec.ingress[0].action", "required")),
        ("action lowercase", r("{action: allow}"), e("spec.ingress[0].action", "write `Allow`")),
        ("action upper", r("{action: DENY}"), e("spec.ingress[0].action", "write `Deny`")),
        ("action other", r("{action: Accept}"), e("spec.ingress[0].action", "Allow, Deny, Log or Pass")),
        ("action second rule", gnp("{ingress: [{action: Allow}, {action: Drop}]}"), e("spec.ingress[1].action", "invalid")),
        ("egress action", gnp("{egress: [{action: nope}]}"), e("spec.egress[0].action", "invalid")),
        // 30. ipVersion.
        ("ipVersion 5", r("{action: Allow, ipVersion: 5}"), e("spec.ingress[0].ipVersion", "4 or 6")),
        ("ipVersion string", r("{action: Allow, ipVersion: \"4\"}"), e("spec.ingress[0].ipVersion", "quoted")),
        ("ipVersion v4", r("{action: Allow, ipVersion: v4}"), e("spec.ingress[0].ipVersion", "integer")),
        // 31. protocol names and numbers.
        ("protocol 0", r("{action: Allow, protocol: 0}"), e("spec.ingress[0].protocol", "0 is not allowed")),
        ("protocol \"0\"", r("{action: Allow, protocol: \"0\"}"), e("spec.ingress[0].protocol", "0 is not allowed")),
        ("protocol tcp", r("{action: Allow, protocol: tcp}"), e("spec.ingress[0].protocol", "write `TCP`")),
        ("protocol Tcp", r("{action: Allow, protocol: Tcp}"), e("spec.ingress[0].protocol", "case-sensitive")),
        ("protocol icmpv6", r("{action: Allow, protocol: icmpv6}"), e("spec.ingress[0].protocol", "write `ICMPv6`")),
        ("protocol gre", r("{action: Allow, protocol: GRE}"), e("spec.ingress[0].protocol", "invalid")),
        ("protocol 255 ok", r("{action: Allow, protocol: 255}"), Pass),
        ("protocol \"47\" ok", r("{action: Allow, protocol: \"47\"}"), Pass),
        ("notProtocol bad", r("{action: Allow, notProtocol: udp}"), e("spec.ingress[0].notProtocol", "write `UDP`")),
        ("notProtocol 256", r("{action: Allow, notProtocol: 256}"), e("spec.ingress[0].notProtocol", "out of range")),
        ("protocol leading zero", r("{action: Allow, protocol: 06}"), e("spec.ingress[0].protocol", "leading zero")),
        // 32. Ports with a protocol that has none.
        ("ports icmp", r("{action: Allow, protocol: ICMP, destination: {ports: [80]}}"), e("spec.ingress[0].destination.ports", "must set protocol to TCP, UDP or SCTP")),
        ("ports icmpv6 named", r("{action: Allow, protocol: ICMPv6, destination: {ports: [http]}}"), e("spec.ingress[0].destination.ports", "must set protocol")),
        ("ports udplite", r("{action: Allow, protocol: UDPLite, source: {ports: [80]}}"), e("spec.ingress[0].source.ports", "must set protocol")),
        ("notPorts 47", r("{action: Allow, protocol: 47, destination: {notPorts: [80]}}"), e("spec.ingress[0].destination.notPorts", "must set protocol")),
        // 33. Numeric ports without protocol (notProtocol does not count).
        ("port no protocol", r("{action: Allow, destination: {ports: [80]}}"), e("spec.ingress[0].destination.ports[0]", "numeric port or port range must set protocol")),
        ("range no protocol", r("{action: Allow, source: {notPorts: [\"1:2\"]}}"), e("spec.ingress[0].source.notPorts[0]", "must set protocol")),
        ("mixed no protocol", r("{action: Allow, destination: {ports: [http, 443]}}"), e("spec.ingress[0].destination.ports[1]", "must set protocol")),
        ("notProtocol not enough", r("{action: Allow, notProtocol: TCP, destination: {ports: [80]}}"), e("spec.ingress[0].destination.ports[0]", "must set protocol")),
        // 34. Port values.
        ("port 0", r("{action: Allow, protocol: TCP, destination: {ports: [0]}}"), e("spec.ingress[0].destination.ports[0]", "port 0")),
        ("port \"0\"", r("{action: Allow, protocol: TCP, destination: {ports: [\"0\"]}}"), e("spec.ingress[0].destination.ports[0]", "port 0")),
        ("range from 0", r("{action: Allow, protocol: TCP, destination: {ports: [\"0:10\"]}}"), e("spec.ingress[0].destination.ports[0]", "starts at 0")),
        ("range above 65535", r("{action: Allow, protocol: TCP, destination: {ports: [\"1:65536\"]}}"), e("spec.ingress[0].destination.ports[0]", "beyond 65535")),
        ("range half", r("{action: Allow, protocol: TCP, destination: {ports: [\"1:\"]}}"), e("spec.ingress[0].destination.ports[0]", "two numbers")),
        ("range three", r("{action: Allow, protocol: TCP, destination: {ports: [\"1:2:3\"]}}"), e("spec.ingress[0].destination.ports[0]", "two numbers")),
        ("named HTTP", r("{action: Allow, protocol: TCP, destination: {ports: [HTTP]}}"), e("spec.ingress[0].destination.ports[0]", "not a valid port name")),
        ("named http_alt", r("{action: Allow, protocol: TCP, destination: {ports: [http_alt]}}"), e("spec.ingress[0].destination.ports[0]", "not a valid port name")),
        ("named 80-90", r("{action: Allow, protocol: TCP, destination: {ports: [80-90]}}"), e("spec.ingress[0].destination.ports[0]", "port")),
        ("port leading zero", r("{action: Allow, protocol: TCP, destination: {ports: [080]}}"), e("spec.ingress[0].destination.ports[0]", "leading zero")),
        ("port list scalar", r("{action: Allow, protocol: TCP, destination: {ports: 80}}"), e("spec.ingress[0].destination.ports", "expected a list")),
        ("port second of two", r("{action: Allow, protocol: TCP, destination: {ports: [80, 0]}}"), e("spec.ingress[0].destination.ports[1]", "port 0")),
        // 35. icmp needs protocol ICMP/ICMPv6 by name.
        ("icmp no protocol", r("{action: Allow, icmp: {type: 8}}"), e("spec.ingress[0].icmp", "requires protocol ICMP or ICMPv6")),
        ("icmp tcp", r("{action: Allow, protocol: TCP, icmp: {type: 8}}"), e("spec.ingress[0].icmp", "requires protocol")),
        ("icmp protocol 1", r("{action: Allow, protocol: 1, icmp: {type: 8}}"), e("spec.ingress[0].icmp", "numbers 1 and 58")),
        ("icmp protocol 58", r("{action: Allow, protocol: 58, icmp: {type: 128}}"), e("spec.ingress[0].icmp", "requires protocol")),
        // 36. code needs type.
        ("code without type", r("{action: Allow, protocol: ICMP, icmp: {code: 1}}"), e("spec.ingress[0].icmp.code", "requires an ICMP type")),
        ("notICMP code without type", r("{action: Allow, protocol: ICMP, notICMP: {code: 1}}"), e("spec.ingress[0].notICMP.code", "requires an ICMP type")),
        // 37. ranges.
        ("icmp type 255", r("{action: Allow, protocol: ICMP, icmp: {type: 255}}"), e("spec.ingress[0].icmp.type", "out of range")),
        ("icmp type 256", r("{action: Allow, protocol: ICMP, icmp: {type: 256, code: 255}}"), e("spec.ingress[0].icmp.type", "out of range")),
        ("icmp code 256", r("{action: Allow, protocol: ICMP, icmp: {type: 3, code: 256}}"), e("spec.ingress[0].icmp.code", "out of range")),
        ("icmp type -1", r("{action: Allow, protocol: ICMP, icmp: {type: -1}}"), e("spec.ingress[0].icmp.type", "out of range")),
        ("notICMP type 255", r("{action: Allow, protocol: ICMP, notICMP: {type: 255}}"), e("spec.ingress[0].notICMP.type", "out of range")),
        // 38. ICMP family vs ipVersion.
        ("icmp v6", r("{action: Allow, protocol: ICMP, ipVersion: 6}"), e("spec.ingress[0].protocol", "ipVersion 6")),
        ("icmpv6 v4", r("{action: Allow, protocol: ICMPv6, ipVersion: 4}"), e("spec.ingress[0].protocol", "ipVersion 4")),
        ("notProtocol icmp v6", r("{action: Allow, notProtocol: ICMP, ipVersion: 6}"), e("spec.ingress[0].notProtocol", "ipVersion 6")),
        ("notProtocol icmpv6 v4", r("{action: Allow, notProtocol: ICMPv6, ipVersion: 4}"), e("spec.ingress[0].notProtocol", "ipVersion 4")),
        // 39. CIDRs: a `/`, strictly masked.
        ("bare ip net", r("{action: Allow, source: {nets: [198.51.100.1]}}"), e("spec.ingress[0].source.nets[0]", "198.51.100.1/32")),
        ("bare ip6 notNet", r("{action: Allow, destination: {notNets: [\"2001:db8::1\"]}}"), e("spec.ingress[0].destination.notNets[0]", "/128")),
        ("host bits", r("{action: Allow, source: {nets: [1.2.3.4/16]}}"), e("spec.ingress[0].source.nets[0]", "did you mean `1.2.0.0/16`")),
        ("host bits v6", r("{action: Allow, source: {nets: [\"2001:db8::1/64\"]}}"), e("spec.ingress[0].source.nets[0]", "host bits")),
        ("prefix too long", r("{action: Allow, source: {nets: [10.0.0.0/33]}}"), e("spec.ingress[0].source.nets[0]", "not a valid CIDR")),
        ("garbage net", r("{action: Allow, source: {nets: [\"<your management CIDR>\"]}}"), e("spec.ingress[0].source.nets[0]", "not a CIDR")),
        ("leading zero net", r("{action: Allow, source: {nets: [010.0.0.0/8]}}"), e("spec.ingress[0].source.nets[0]", "not a valid CIDR")),
        // 40. Families do not mix within a rule.
        ("mix in one list", r("{action: Allow, source: {nets: [10.0.0.0/8, \"2001:db8::/32\"]}}"), e("spec.ingress[0].source.nets[1]", "mixes IPv4 and IPv6")),
        ("mix across sides", r("{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {notNets: [\"2001:db8::/32\"]}}"), e("spec.ingress[0].destination.notNets[0]", "mixes")),
        ("mix nets notNets", r("{action: Allow, source: {nets: [\"2001:db8::/32\"], notNets: [10.0.0.0/8]}}"), e("spec.ingress[0].source.notNets[0]", "mixes")),
        // 41. ipVersion agrees with CIDRs.
        ("ipVersion 6 v4 net", r("{action: Allow, ipVersion: 6, source: {nets: [10.0.0.0/8]}}"), e("spec.ingress[0].source.nets[0]", "ipVersion")),
        ("ipVersion 4 v6 net", r("{action: Allow, ipVersion: 4, destination: {notNets: [\"2001:db8::/32\"]}}"), e("spec.ingress[0].destination.notNets[0]", "ipVersion")),
        // 42. notNets catch-all.
        ("notNets 0/0", r("{action: Allow, source: {notNets: [0.0.0.0/0]}}"), e("spec.ingress[0].source.notNets[0]", "matches every address")),
        ("notNets ::/0", r("{action: Allow, source: {notNets: [\"::/0\"]}}"), e("spec.ingress[0].source.notNets[0]", "every address")),
        ("notNets 0:0::/0", r("{action: Allow, destination: {notNets: [\"0:0:0::/0\"]}}"), e("spec.ingress[0].destination.notNets[0]", "every address")),
        ("nets 0/0 fine", r("{action: Allow, source: {nets: [0.0.0.0/0]}}"), Pass),
        // 44. Rule selectors.
        ("rule selector bad", r("{action: Allow, source: {selector: \"a ==\"}}"), e("spec.ingress[0].source.selector", "invalid selector")),
        ("rule notSelector bad", r("{action: Allow, destination: {notSelector: \"has(\"}}"), e("spec.ingress[0].destination.notSelector", "invalid selector")),
        ("rule selector global", r("{action: Allow, source: {selector: \"global()\"}}"), e("spec.ingress[0].source.selector", "global()")),
        ("rule selector has space", r("{action: Allow, source: {selector: \"has (a)\"}}"), e("spec.ingress[0].source.selector", "invalid selector")),
        // Rule lists elsewhere.
        ("rule not a mapping", gnp("{ingress: [Allow]}"), e("spec.ingress[0]", "expected a mapping")),
        ("entity not a mapping", r("{action: Allow, source: [a]}"), e("spec.ingress[0].source", "expected a mapping")),
    ]);
}

#[test]
fn network_set_profile_and_tier_rules() {
    let gns = |spec: &str| res("GlobalNetworkSet", "s", spec);
    let prof = |spec: &str| res("Profile", "p", spec);
    let tier = |name: &str, spec: &str| res("Tier", name, spec);
    check_all(vec![
        // 50. GlobalNetworkSet nets: CIDR or IP, not strict, mixed families.
        ("gns ok", gns("{nets: [198.51.100.1, 10.0.0.1/8, \"2001:db8::1\", \"2001:db8::/32\"]}"), Pass),
        ("gns empty", gns("{}"), Pass),
        ("gns no spec", format!("{API}\nkind: GlobalNetworkSet\nmetadata: {{name: s}}\n"), Pass),
        ("gns hostname", gns("{nets: [example.com]}"), e("spec.nets[0]", "neither a CIDR nor an IP")),
        ("gns bad prefix", gns("{nets: [10.0.0.0/40]}"), e("spec.nets[0]", "neither a CIDR nor an IP")),
        ("gns second bad", gns("{nets: [10.0.0.0/8, x]}"), e("spec.nets[1]", "neither")),
        // 51. Profile rules and labelsToApply.
        ("profile ok", prof("{ingress: [{action: Allow, protocol: TCP, destination: {ports: [22]}}], egress: [{action: Allow}], labelsToApply: {a: b}}"), Pass),
        ("profile rule bad", prof("{egress: [{action: Allow, protocol: ICMP, icmp: {type: 256}}]}"), e("spec.egress[0].icmp.type", "out of range")),
        ("profile icmp no protocol", prof("{ingress: [{action: Allow, icmp: {type: 8}}]}"), e("spec.ingress[0].icmp", "requires protocol")),
        ("profile action case", prof("{ingress: [{action: allow}]}"), e("spec.ingress[0].action", "write `Allow`")),
        ("profile label key", prof("{labelsToApply: {\"a b\": c}}"), e("spec.labelsToApply[a b]", "label key")),
        ("profile label value", prof("{labelsToApply: {a: \"b c\"}}"), e("spec.labelsToApply[a]", "label value")),
        // 52. Reserved profile name.
        ("profile reserved", res("Profile", "projectcalico-default-allow", "{}"), e("metadata.name", "built in")),
        // Tier.
        ("tier ok", tier("t1", "{order: 10, defaultAction: Pass}"), Pass),
        ("tier no order", tier("t1", "{}"), Pass),
        ("tier default ok", tier("default", "{order: 1000000}"), Pass),
        ("tier default order", tier("default", "{order: 5}"), e("spec.order", "fixed at 1000000")),
        // v3.32 always has kube-admin (1,000) and kube-baseline (10,000,000); an omitted order
        // is stored as 1,000,000 first, so their resources must spell the order out.
        ("tier kube-admin ok", tier("kube-admin", "{order: 1000, defaultAction: Pass}"), Pass),
        ("tier kube-admin no order", tier("kube-admin", "{defaultAction: Pass}"), e("spec.order", "fixed at 1000")),
        ("tier kube-baseline ok", tier("kube-baseline", "{order: 10000000}"), Pass),
        ("tier kube-baseline order", tier("kube-baseline", "{order: 1000000}"), e("spec.order", "fixed at 10000000")),
        ("tier action", tier("t1", "{defaultAction: Allow}"), e("spec.defaultAction", "Deny or Pass")),
        ("tier action case", tier("t1", "{defaultAction: pass}"), e("spec.defaultAction", "case-sensitive")),
        ("tier dotted name", tier("a.b", "{}"), e("metadata.name", "not a valid Tier name")),
        ("tier order string", tier("t1", "{order: high}"), e("spec.order", "expected a number")),
    ]);
}

#[test]
fn felix_configuration_rules() {
    let f = |spec: &str| felix(spec);
    check_all(vec![
        ("full", f("{failsafeInboundHostPorts: [{protocol: TCP, port: 22}, {protocol: UDP, port: 68, net: 198.51.100.0/24}, {protocol: TCP, port: 0, net: \"2001:db8::1\"}], failsafeOutboundHostPorts: [], defaultEndpointToHostAction: Accept, interfacePrefix: \"cali,tap\", iptablesMarkMask: 0xff000000, chainInsertMode: append, iptablesRefreshInterval: 90s, iptablesPostWriteCheckInterval: 1m30s, iptablesBackend: NFT, ipv6Support: false, iptablesFilterAllowAction: Return, iptablesMangleAllowAction: Accept, iptablesFilterDenyAction: Reject, logPrefix: \"calico-%t %k:/x_y\", logActionRateLimit: 10/second, logActionRateLimitBurst: 9999, disableConntrackInvalidCheck: true, maxIpsetSize: 1048576}"), Pass),
        ("node name", res("FelixConfiguration", "node.host-1", "{}"), Pass),
        ("other name", res("FelixConfiguration", "global", "{}"), e("metadata.name", "`default` or `node.<nodename>`")),
        ("node. empty", res("FelixConfiguration", "node.", "{}"), e("metadata.name", "not a valid name")),
        // 53-55. Action enums, exact case in v3.32.1.
        ("e2h drop case", f("{defaultEndpointToHostAction: DROP}"), e("spec.defaultEndpointToHostAction", "write `Drop`")),
        ("e2h other", f("{defaultEndpointToHostAction: Reject}"), e("spec.defaultEndpointToHostAction", "Drop, Accept, Return")),
        ("allow action case", f("{iptablesFilterAllowAction: accept}"), e("spec.iptablesFilterAllowAction", "write `Accept`")),
        ("mangle allow other", f("{iptablesMangleAllowAction: Drop}"), e("spec.iptablesMangleAllowAction", "Accept, Return")),
        ("deny action other", f("{iptablesFilterDenyAction: Accept}"), e("spec.iptablesFilterDenyAction", "Drop, Reject")),
        ("deny action case", f("{iptablesFilterDenyAction: reject}"), e("spec.iptablesFilterDenyAction", "write `Reject`")),
        // 56. chainInsertMode any case.
        ("insert upper", f("{chainInsertMode: INSERT}"), Pass),
        ("insert other", f("{chainInsertMode: prepend}"), e("spec.chainInsertMode", "Insert or Append")),
        // 57. logPrefix characters.
        ("logPrefix bad", f("{logPrefix: \"calico!\"}"), e("spec.logPrefix", "contains `!`")),
        ("logPrefix dot", f("{logPrefix: a.b}"), e("spec.logPrefix", "contains `.`")),
        // 58. iptablesBackend.
        ("backend case", f("{iptablesBackend: nft}"), e("spec.iptablesBackend", "write `NFT`")),
        ("backend other", f("{iptablesBackend: Iptables}"), e("spec.iptablesBackend", "Auto, Legacy, NFT")),
        // 59. kubeNodePortRanges is a Calico field hostfw ignores (warning).
        ("kubeNodePortRanges", f("{kubeNodePortRanges: [\"30000:32767\", 8080]}"), Warn("spec.kubeNodePortRanges", "ignored")),
        ("kubeNodePortRanges 8", f("{kubeNodePortRanges: [1, 2, 3, 4, 5, 6, 7, 8]}"), e("spec.kubeNodePortRanges", "more than 7")),
        ("kubeNodePortRanges named", f("{kubeNodePortRanges: [http]}"), e("spec.kubeNodePortRanges[0]", "not names")),
        // 60. Failsafe entries as Felix parses them.
        ("failsafe sctp", f("{failsafeInboundHostPorts: [{protocol: SCTP, port: 22}]}"), e("spec.failsafeInboundHostPorts[0].protocol", "Felix's failsafe parser")),
        // calicoctl v3.32.1 `validateProtoPort`: exactly TCP, UDP or SCTP.
        ("failsafe lower case", f("{failsafeInboundHostPorts: [{protocol: tcp, port: 22}]}"), e("spec.failsafeInboundHostPorts[0].protocol", "requires upper case (TCP)")),
        ("failsafe mixed case", f("{failsafeOutboundHostPorts: [{protocol: Udp, port: 53}]}"), e("spec.failsafeOutboundHostPorts[0].protocol", "requires upper case (UDP)")),
        ("failsafe no protocol", f("{failsafeInboundHostPorts: [{port: 22}]}"), e("spec.failsafeInboundHostPorts[0].protocol", "required")),
        ("failsafe empty protocol", f("{failsafeOutboundHostPorts: [{protocol: \"\", port: 22}]}"), e("spec.failsafeOutboundHostPorts[0].protocol", "must be TCP or UDP")),
        ("failsafe port big", f("{failsafeInboundHostPorts: [{protocol: TCP, port: 65536}]}"), e("spec.failsafeInboundHostPorts[0].port", "out of range")),
        ("failsafe port negative", f("{failsafeInboundHostPorts: [{protocol: TCP, port: -1}]}"), e("spec.failsafeInboundHostPorts[0].port", "out of range")),
        ("failsafe no port", f("{failsafeInboundHostPorts: [{protocol: TCP}]}"), e("spec.failsafeInboundHostPorts[0].port", "required")),
        ("failsafe net bad", f("{failsafeInboundHostPorts: [{protocol: TCP, port: 22, net: somewhere}]}"), e("spec.failsafeInboundHostPorts[0].net", "neither a CIDR nor an IP")),
        ("failsafe env syntax", f("{failsafeInboundHostPorts: [\"tcp:22\"]}"), e("spec.failsafeInboundHostPorts[0]", "environment variables")),
        ("failsafe none", f("{failsafeInboundHostPorts: none}"), e("spec.failsafeInboundHostPorts", "expected a list")),
        ("failsafe second", f("{failsafeOutboundHostPorts: [{protocol: UDP, port: 53}, {protocol: ICMP, port: 1}]}"), e("spec.failsafeOutboundHostPorts[1].protocol", "must be TCP or UDP")),
        // 61. Durations.
        ("duration no unit", f("{iptablesRefreshInterval: 10}"), e("spec.iptablesRefreshInterval", "no unit")),
        ("duration days", f("{iptablesRefreshInterval: 1d}"), e("spec.iptablesRefreshInterval", "not a valid duration")),
        ("duration micro", f("{iptablesPostWriteCheckInterval: 10us}"), e("spec.iptablesPostWriteCheckInterval", "not a valid duration")),
        ("duration negative", f("{iptablesRefreshInterval: -1s}"), e("spec.iptablesRefreshInterval", "not a valid duration")),
        ("duration fraction", f("{iptablesRefreshInterval: 0.5s}"), Pass),
        ("ignored duration bad", f("{reportingInterval: 10}"), e("spec.reportingInterval", "no unit")),
        ("ignored duration ok", f("{reportingInterval: 0s}"), Warn("spec.reportingInterval", "ignored")),
        // Mark mask: at least five bits.
        ("mask 4 bits", f("{iptablesMarkMask: 0xf0000000}"), e("spec.iptablesMarkMask", "at least 5")),
        ("mask 5 bits", f("{iptablesMarkMask: 0x1f}"), Pass),
        ("mask zero", f("{iptablesMarkMask: 0}"), e("spec.iptablesMarkMask", "0 bits")),
        ("mask too big", f("{iptablesMarkMask: 0x100000000}"), e("spec.iptablesMarkMask", "out of range")),
        ("mask quoted", f("{iptablesMarkMask: \"0xffff0000\"}"), e("spec.iptablesMarkMask", "quoted")),
        ("mask decimal", f("{iptablesMarkMask: 4294901760}"), Pass),
        // Rate limits.
        ("rate bad unit", f("{logActionRateLimit: 10/week}"), e("spec.logActionRateLimit", "N/second")),
        ("rate zero", f("{logActionRateLimit: 0/second}"), e("spec.logActionRateLimit", "1 to 9999")),
        ("rate too many", f("{logActionRateLimit: 10000/minute}"), e("spec.logActionRateLimit", "1 to 9999")),
        ("rate ok", f("{logActionRateLimit: 9999/day}"), Pass),
        ("burst big", f("{logActionRateLimitBurst: 10000}"), e("spec.logActionRateLimitBurst", "out of range")),
        // Other typed fields.
        ("ipv6 yes", f("{ipv6Support: yes}"), e("spec.ipv6Support", "YAML 1.1 boolean")),
        ("ipv6 quoted", f("{ipv6Support: \"false\"}"), e("spec.ipv6Support", "quoted")),
        ("prefix bad", f("{interfacePrefix: \"cali,\"}"), e("spec.interfacePrefix", "is invalid")),
        ("ipset size 0", f("{maxIpsetSize: 0}"), e("spec.maxIpsetSize", "out of range")),
        // Observability, as Felix configures it.
        ("metrics on", f("{prometheusMetricsEnabled: true, prometheusMetricsHost: 127.0.0.1, prometheusMetricsPort: 9091}"), Pass),
        ("metrics host any", f("{prometheusMetricsHost: \"\"}"), Pass),
        ("metrics host bad", f("{prometheusMetricsHost: \"a b\"}"), e("spec.prometheusMetricsHost", "is invalid")),
        ("metrics port big", f("{prometheusMetricsPort: 65536}"), e("spec.prometheusMetricsPort", "out of range")),
        ("process metrics", f("{prometheusProcessMetricsEnabled: false}"), Pass),
        ("health on", f("{healthEnabled: true, healthHost: localhost, healthPort: 9099}"), Pass),
        ("health bool bad", f("{healthEnabled: on}"), e("spec.healthEnabled", "YAML 1.1 boolean")),
        ("log severity", f("{logSeverityScreen: Warning}"), Pass),
        ("log severity trace", f("{logSeverityScreen: Trace}"), Pass),
        ("log severity case", f("{logSeverityScreen: info}"), e("spec.logSeverityScreen", "write `Info`")),
        ("log severity bad", f("{logSeverityScreen: Loud}"), e("spec.logSeverityScreen", "is invalid")),
        // Ignored Calico fields: warning naming them, still type-checked.
        ("ipipEnabled", f("{ipipEnabled: true}"), Warn("spec.ipipEnabled", "`ipipEnabled`")),
        ("logSeverityFile", f("{logSeverityFile: Info}"), Warn("spec.logSeverityFile", "no meaning for hostfw")),
        ("vxlanEnabled", f("{vxlanEnabled: false}"), Warn("spec.vxlanEnabled", "ignored")),
        ("bpfEnabled", f("{bpfEnabled: false}"), Warn("spec.bpfEnabled", "ignored")),
        ("wireguardEnabled", f("{wireguardEnabled: false}"), Warn("spec.wireguardEnabled", "ignored")),
        ("ipipMTU", f("{ipipMTU: 1400}"), Warn("spec.ipipMTU", "ignored")),
        ("ignored bool bad", f("{bpfEnabled: maybe}"), e("spec.bpfEnabled", "expected true or false")),
        ("ignored log level bad", f("{logSeverityFile: Loud}"), e("spec.logSeverityFile", "log level")),
        ("ignored log level any case", f("{logSeveritySys: debug}"), Warn("spec.logSeveritySys", "ignored")),
        ("ignored case-insensitive", f("{IPIPEnabled: true}"), Warn("spec.ipipEnabled", "ignored")),
    ]);
}

#[test]
fn yaml_scalar_decisions() {
    let r = |x: &str| rule(x);
    check_all(vec![
        ("hex port", r("{action: Allow, protocol: TCP, destination: {ports: [0x50]}}"), Pass),
        ("octal-looking port", r("{action: Allow, protocol: TCP, destination: {ports: [010]}}"), e("spec.ingress[0].destination.ports[0]", "ambiguous")),
        ("underscore port", r("{action: Allow, protocol: TCP, destination: {ports: [8_080]}}"), e("spec.ingress[0].destination.ports[0]", "ambiguous")),
        ("0o order", gnp("{order: 0o17}"), e("spec.order", "ambiguous")),
        ("null field is absent", gnp("{order: null, selector: ~}"), Pass),
        ("yes in string field", hep("{node: yes, interfaceName: eth0}"), e("spec.node", "quote it")),
        ("on as interface", hep("{node: n1, interfaceName: on}"), e("spec.interfaceName", "boolean")),
        ("quoted on", hep("{node: n1, interfaceName: \"on\"}"), Pass),
        ("number node", hep("{node: 1.10, interfaceName: eth0}"), e("spec.node", "number")),
        ("plain int node", hep("{node: \"007\", interfaceName: eth0}"), Pass),
        ("tagged mapping", format!("{API}\nkind: Profile\nmetadata: !!map {{name: a}}\n"), Fail(None, "YAML tag")),
        ("anchors and aliases", format!("{API}\nkind: Profile\nmetadata: {{name: a}}\nspec:\n  ingress: &r [{{action: Allow}}]\n  egress: *r\n"), Pass),
        ("unknown alias", format!("{API}\nkind: Profile\nmetadata: {{name: a}}\nspec: {{ingress: *nothing}}\n"), Fail(None, "alias")),
        ("complex key", format!("{API}\nkind: Profile\nmetadata: {{name: a}}\nspec: {{[a]: 1}}\n"), Fail(None, "mapping key")),
        ("json file", "{\"apiVersion\": \"projectcalico.org/v3\", \"kind\": \"GlobalNetworkPolicy\", \"metadata\": {\"name\": \"j\"}, \"spec\": {\"order\": 1.5, \"applyOnForward\": true}}".into(), Pass),
    ]);
}

fn load_files(files: &[(&str, &str)]) -> hostfw::policy::Loaded {
    let sources: Vec<NamedText> = files
        .iter()
        .map(|(p, t)| NamedText {
            name: p.to_string(),
            text: t.to_string(),
        })
        .collect();
    load_sources(&sources)
}

#[test]
fn duplicate_names_across_files_name_both_places() {
    let a = res("GlobalNetworkPolicy", "p", "{}");
    let b = format!(
        "# second\n{}",
        res("GlobalNetworkPolicy", "p", "{order: 1}")
    );
    let other_kind = res("Profile", "p", "{}");
    let l = load_files(&[("a.yaml", &a), ("b.yaml", &b), ("c.yaml", &other_kind)]);
    assert!(l.set.is_none());
    let errs: Vec<String> = l.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        errs,
        vec![
            "b.yaml:4:18: error: GlobalNetworkPolicy/p: metadata.name: duplicate \
             GlobalNetworkPolicy `p`: also defined at a.yaml:1:1"
        ]
    );
}

#[test]
fn every_error_is_collected_and_sorted() {
    let bad1 = rule("{action: allow, protocol: tcp}");
    let bad2 = hep("{interfaceName: eth0:1}");
    let l = load_files(&[("z.yaml", &bad1), ("a.yaml", &bad2)]);
    assert!(l.set.is_none());
    let got: Vec<(String, u32, Option<String>)> = l
        .diagnostics
        .iter()
        .map(|d| (d.file.clone(), d.line, d.field.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a.yaml".into(), 4, Some("spec.node".into())),
            ("a.yaml".into(), 4, Some("spec.interfaceName".into())),
            ("z.yaml".into(), 4, Some("spec.ingress[0].action".into())),
            ("z.yaml".into(), 4, Some("spec.ingress[0].protocol".into())),
        ]
    );
    // One invalid resource rejects everything, including the valid ones (all-or-nothing).
    let good = res("Profile", "ok", "{}");
    assert!(load_files(&[("a.yaml", &good), ("b.yaml", &bad1)])
        .set
        .is_none());
}

#[test]
fn types_defaulting_follows_calico() {
    let types = |spec: &str| {
        let l = load_files(&[("a.yaml", &gnp(spec))]);
        let p = &l.set.expect("valid").policies[0];
        (p.types.ingress, p.types.egress)
    };
    assert_eq!(types("{}"), (true, false));
    assert_eq!(types("{types: []}"), (true, false));
    assert_eq!(types("{ingress: [{action: Allow}]}"), (true, false));
    assert_eq!(types("{egress: [{action: Allow}]}"), (false, true));
    assert_eq!(
        types("{ingress: [{action: Allow}], egress: [{action: Allow}]}"),
        (true, true)
    );
    assert_eq!(
        types("{ingress: [], egress: [{action: Allow}]}"),
        (false, true)
    );
    assert_eq!(
        types("{types: [Egress], ingress: [{action: Allow}]}"),
        (false, true)
    );
    assert_eq!(types("{types: [Ingress, Egress]}"), (true, true));
}

#[test]
fn namespace_selector_global_becomes_felix_selector() {
    // libcalico-go/lib/backend/syncersv1/updateprocessors/rules.go: global() selects what has
    // no namespace label, and is joined to the entity's selector as `(ns) && (sel)`.
    let l = load_files(&[(
        "a.yaml",
        &rule("{action: Allow, source: {namespaceSelector: \"global()\"}, destination: {namespaceSelector: global(), selector: \"role == 'db'\"}}"),
    )]);
    let r = &l.set.expect("valid").policies[0].ingress[0];
    let canonical =
        |e: &hostfw::model::EntityRule| e.selector.as_ref().map(|s| s.canonical().to_string());
    assert_eq!(
        canonical(&r.source).as_deref(),
        Some("!has(projectcalico.org/namespace)")
    );
    assert_eq!(
        canonical(&r.destination).as_deref(),
        Some("(!has(projectcalico.org/namespace) && role == \"db\")")
    );
}

#[test]
fn policy_defaults_and_values() {
    let l = load_files(&[("a.yaml", &gnp("{order: 10.5}"))]);
    let p = &l.set.expect("valid").policies[0];
    assert_eq!(p.order, Some(10.5));
    assert_eq!(p.tier, "default");
    assert_eq!(p.selector.source(), "all()");
    assert!(!p.do_not_track && !p.pre_dnat && !p.apply_on_forward);
    let l = load_files(&[("a.yaml", &rule("{action: Log, protocol: ICMP, icmp: {type: 3, code: 1}, metadata: {annotations: {from: fe}}}"))]);
    let r = &l.set.expect("valid").policies[0].ingress[0];
    assert_eq!(r.action, hostfw::model::RuleAction::Log);
    assert_eq!(
        r.icmp,
        Some(hostfw::model::IcmpMatch {
            icmp_type: 3,
            code: Some(1)
        })
    );
    assert_eq!(r.annotations.get("from").map(String::as_str), Some("fe"));
    let l = load_files(&[("a.yaml", &rule("{action: Allow, protocol: \"6\", destination: {ports: [\"22\", \"5:5\", \"6:9\", ssh]}}"))]);
    let r = &l.set.expect("valid").policies[0].ingress[0];
    use hostfw::model::Port;
    assert_eq!(r.protocol, Some(hostfw::model::Protocol::Number(6)));
    assert_eq!(
        r.destination.ports,
        vec![
            Port::Single(22),
            Port::Single(5),
            Port::Range(6, 9),
            Port::Named("ssh".into())
        ]
        .into()
    );
}

#[test]
fn selector_errors_point_inside_the_value() {
    use hostfw::model::selector::Selector;
    let sel = "has(a) && )";
    let offset = Selector::parse(sel).expect_err("invalid").offset as u32;
    // Line 5 is `  selector: "has(a) && )"`: the quote is column 13, the text starts at 14.
    let text = format!(
        "{API}\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  selector: \"{sel}\"\n"
    );
    let l = load_files(&[("a.yaml", &text)]);
    let d = &l.diagnostics[0];
    assert_eq!((d.line, d.column), (5, 14 + offset), "{d}");
    // With an escape in the value the position inside is unknown: the value's start is used.
    let text = format!(
        "{API}\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  selector: \"\\x61 == \"\n"
    );
    let l = load_files(&[("a.yaml", &text)]);
    let d = &l.diagnostics[0];
    assert_eq!((d.line, d.column), (5, 13), "{d}");
}
