//! `hostfw show`: print this node's resolved view (endpoints, ordered policies per traffic class,
//! failsafe ports, effective FelixConfiguration, warnings) as text or JSON. Touches no kernel.
//!
//! Failsafe entries are printed in Felix's own string form: `proto:port`, or `proto:net:port`
//! when restricted to a net, with IPv6 nets in brackets (`tcp:[2001:db8::/32]:22`).

use super::{common, CmdResult, Exit};
use crate::cli::{OutputFormat, ShowArgs};
use crate::model::*;
use crate::resolve::{flat_names, EffectiveConfig, NodeView, TierPolicies};
use crate::settings::Settings;
use ipnet::IpNet;
use serde::ser::SerializeMap;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write;

/// Load, resolve for this node with the host's real interfaces, and print. Exit 0 even with
/// warnings (they are part of the report); 1 when the policy set is invalid.
pub fn run(settings: &Settings, args: &ShowArgs) -> CmdResult {
    // The view only: `show` renders nothing, and prints the warnings itself.
    let want = common::Want {
        families: crate::desired::Families::Nothing,
        guard: false,
        print_warnings: false,
    };
    let view = match common::load_desired(settings, want) {
        Ok(d) => d.view,
        Err(done) => return done,
    };
    match args.output {
        OutputFormat::Text => print!("{}", format_text(&view)),
        OutputFormat::Json => println!("{}", format_json(&view)),
    }
    Ok(Exit::Ok)
}

/// One failsafe entry in Felix's string form.
pub fn failsafe_string(f: &FailsafePort) -> String {
    let proto = match f.protocol {
        FailsafeProtocol::Tcp => "tcp",
        FailsafeProtocol::Udp => "udp",
    };
    match &f.net {
        None => format!("{proto}:{}", f.port),
        Some(IpNet::V4(n)) => format!("{proto}:{n}:{}", f.port),
        Some(IpNet::V6(n)) => format!("{proto}:[{n}]:{}", f.port),
    }
}

fn endpoint_to_host(a: EndpointToHostAction) -> &'static str {
    match a {
        EndpointToHostAction::Drop => "Drop",
        EndpointToHostAction::Accept => "Accept",
        EndpointToHostAction::Return => "Return",
    }
}

fn allow(a: AllowAction) -> &'static str {
    match a {
        AllowAction::Accept => "Accept",
        AllowAction::Return => "Return",
    }
}

fn deny(a: DenyAction) -> &'static str {
    match a {
        DenyAction::Drop => "Drop",
        DenyAction::Reject => "Reject",
    }
}

fn rate_limit(r: &RateLimit) -> String {
    let unit = match r.per {
        RateUnit::Second => "second",
        RateUnit::Minute => "minute",
        RateUnit::Hour => "hour",
        RateUnit::Day => "day",
    };
    format!("{}/{unit}", r.count)
}

fn duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The effective configuration as (FelixConfiguration field name, value) pairs, in a fixed
/// order. Failsafe ports are shown separately.
fn config_fields(c: &EffectiveConfig) -> Vec<(&'static str, Value)> {
    vec![
        (
            "defaultEndpointToHostAction",
            json!(endpoint_to_host(c.default_endpoint_to_host_action)),
        ),
        ("interfacePrefix", json!(c.interface_prefix)),
        (
            "iptablesMarkMask",
            json!(format!("{:#010x}", c.iptables_mark_mask)),
        ),
        (
            "chainInsertMode",
            json!(match c.chain_insert_mode {
                InsertMode::Insert => "Insert",
                InsertMode::Append => "Append",
            }),
        ),
        (
            "iptablesRefreshInterval",
            json!(duration(c.iptables_refresh_interval)),
        ),
        (
            "iptablesPostWriteCheckInterval",
            json!(duration(c.iptables_post_write_check_interval)),
        ),
        (
            "iptablesBackend",
            json!(match c.iptables_backend {
                BackendChoice::Auto => "Auto",
                BackendChoice::Legacy => "Legacy",
                BackendChoice::Nft => "NFT",
            }),
        ),
        ("ipv6Support", json!(c.ipv6_support)),
        (
            "iptablesFilterAllowAction",
            json!(allow(c.iptables_filter_allow_action)),
        ),
        (
            "iptablesMangleAllowAction",
            json!(allow(c.iptables_mangle_allow_action)),
        ),
        (
            "iptablesFilterDenyAction",
            json!(deny(c.iptables_filter_deny_action)),
        ),
        ("logPrefix", json!(c.log_prefix)),
        (
            "logActionRateLimit",
            c.log_action_rate_limit
                .as_ref()
                .map_or(Value::Null, |r| json!(rate_limit(r))),
        ),
        (
            "logActionRateLimitBurst",
            json!(c.log_action_rate_limit_burst),
        ),
        (
            "disableConntrackInvalidCheck",
            json!(c.disable_conntrack_invalid_check),
        ),
        ("maxIpsetSize", json!(c.max_ipset_size)),
    ]
}

/// The JSON report docs/design.md promises ("Product contract"; keys in that order), plus the
/// effective `config`.
#[derive(Serialize)]
struct Report<'a> {
    node: &'a str,
    endpoints: Vec<EndpointReport<'a>>,
    failsafe: FailsafeReport,
    config: OrderedFields,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct EndpointReport<'a> {
    name: &'a str,
    interface: &'a str,
    labels: &'a Labels,
    #[serde(rename = "expectedIPs")]
    expected_ips: Vec<String>,
    profiles: &'a [String],
    policies: OrderedFields,
}

#[derive(Serialize)]
struct FailsafeReport {
    inbound: Vec<String>,
    outbound: Vec<String>,
}

/// A JSON object whose keys keep the given order (serde_json's Map would sort them).
struct OrderedFields(Vec<(&'static str, Value)>);

impl Serialize for OrderedFields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The JSON report as pretty-printed text (no trailing newline).
pub fn format_json(view: &NodeView) -> String {
    let report = Report {
        node: &view.node,
        endpoints: view
            .endpoints
            .iter()
            .map(|ep| EndpointReport {
                name: &ep.hep,
                interface: ep.interface.display(),
                labels: &ep.labels,
                expected_ips: ep.expected_ips.iter().map(|a| a.to_string()).collect(),
                profiles: &ep.profiles,
                policies: OrderedFields(
                    ep.policies
                        .classes()
                        .iter()
                        .map(|(name, tiers)| (*name, json!(flat_names(tiers))))
                        .collect(),
                ),
            })
            .collect(),
        failsafe: FailsafeReport {
            inbound: view
                .config
                .failsafe_inbound
                .iter()
                .map(failsafe_string)
                .collect(),
            outbound: view
                .config
                .failsafe_outbound
                .iter()
                .map(failsafe_string)
                .collect(),
        },
        config: OrderedFields(config_fields(&view.config)),
        warnings: &view.warnings,
    };
    // Plain strings, numbers and maps of strings: serialisation cannot fail.
    serde_json::to_string_pretty(&report).unwrap_or_default()
}

/// How each traffic class is labelled in text output, and whether its tiers end in the tier's
/// default action (normal and forward chains) or always fall through (preDNAT, untracked).
const TEXT_CLASSES: [(&str, bool); 7] = [
    ("ingress", true),
    ("egress", true),
    ("forward ingress", true),
    ("forward egress", true),
    ("preDNAT ingress", false),
    ("untracked ingress", false),
    ("untracked egress", false),
];

fn tiers_text(tiers: &[TierPolicies], ends_with_tier_action: bool) -> String {
    if tiers.is_empty() {
        return "(none)".into();
    }
    tiers
        .iter()
        .map(|t| {
            let end = match (ends_with_tier_action, t.default_action) {
                (true, TierAction::Deny) => "Deny",
                _ => "Pass",
            };
            format!("tier {} (end: {end}): {}", t.tier, t.policies.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn list_or_none(items: Vec<String>) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

/// The human-readable report.
pub fn format_text(view: &NodeView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "node: {}", view.node);
    if view.endpoints.is_empty() {
        let _ = writeln!(out, "\nno active host endpoints");
    }
    for ep in &view.endpoints {
        let _ = writeln!(
            out,
            "\nendpoint {} (HostEndpoint {})",
            ep.interface.display(),
            ep.hep
        );
        let labels = ep.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "  labels: {}", list_or_none(labels));
        let ips = ep.expected_ips.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(out, "  expectedIPs: {}", list_or_none(ips));
        let _ = writeln!(out, "  profiles: {}", list_or_none(ep.profiles.clone()));
        if !ep.ports.is_empty() {
            let ports = ep
                .ports
                .iter()
                .map(|p| format!("{} {}/{}", p.name, p.protocol.iptables_name(), p.port))
                .collect();
            let _ = writeln!(out, "  ports: {}", list_or_none(ports));
        }
        let _ = writeln!(out, "  policies:");
        for ((label, ends), (_, tiers)) in TEXT_CLASSES.iter().zip(ep.policies.classes()) {
            let _ = writeln!(out, "    {label}: {}", tiers_text(tiers, *ends));
        }
    }
    let _ = writeln!(out);
    let fs = |l: &[FailsafePort]| list_or_none(l.iter().map(failsafe_string).collect());
    let _ = writeln!(
        out,
        "failsafe inbound: {}",
        fs(&view.config.failsafe_inbound)
    );
    let _ = writeln!(
        out,
        "failsafe outbound: {}",
        fs(&view.config.failsafe_outbound)
    );
    let _ = writeln!(out, "\nconfiguration:");
    for (name, value) in config_fields(&view.config) {
        let value = match value {
            Value::String(s) => s,
            Value::Null => "(none)".into(),
            v => v.to_string(),
        };
        let _ = writeln!(out, "  {name}: {value}");
    }
    if view.warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings: (none)");
    } else {
        let _ = writeln!(out, "\nwarnings:");
        for w in &view.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failsafe_strings_use_felix_form() {
        let fp = |protocol, port, net: Option<&str>| FailsafePort {
            protocol,
            port,
            net: net.map(|n| n.parse().unwrap()),
        };
        assert_eq!(
            failsafe_string(&fp(FailsafeProtocol::Tcp, 22, None)),
            "tcp:22"
        );
        assert_eq!(
            failsafe_string(&fp(FailsafeProtocol::Udp, 53, Some("198.51.100.0/24"))),
            "udp:198.51.100.0/24:53"
        );
        assert_eq!(
            failsafe_string(&fp(FailsafeProtocol::Tcp, 22, Some("2001:db8::/32"))),
            "tcp:[2001:db8::/32]:22"
        );
    }

    fn small_view() -> NodeView {
        let meta = Meta::for_test;
        let mut hep = HostEndpoint {
            meta: meta("h1"),
            node: "n1".into(),
            interface: Some(InterfaceName::Named("eth0".into())),
            expected_ips: vec!["198.51.100.10".parse().unwrap()],
            profiles: vec![],
            ports: vec![EndpointPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
            }],
        };
        hep.meta.labels.insert("role".into(), "web".into());
        let policy = |name: &str, tier: &str, order: f64| GlobalNetworkPolicy {
            tier: tier.into(),
            order: Some(order),
            types: PolicyTypes {
                ingress: true,
                egress: false,
            },
            ..GlobalNetworkPolicy::for_test(name)
        };
        let set = PolicySet {
            host_endpoints: vec![hep],
            policies: vec![
                policy("a", DEFAULT_TIER, 2.0).into(),
                policy("b", DEFAULT_TIER, 1.0).into(),
                policy("s", "sec", 1.0).into(),
            ],
            tiers: vec![Tier {
                meta: meta("sec"),
                order: Some(1.0),
                default_action: TierAction::Pass,
            }],
            felix_configs: vec![FelixConfiguration {
                meta: meta("default"),
                spec: FelixSpec {
                    failsafe_inbound: Some(vec![FailsafePort {
                        protocol: FailsafeProtocol::Tcp,
                        port: 22,
                        net: Some("198.51.100.0/24".parse().unwrap()),
                    }]),
                    failsafe_outbound: Some(vec![]),
                    ..FelixSpec::default()
                },
            }],
            ..PolicySet::default()
        };
        crate::resolve::resolve(&set, "n1", &Default::default())
    }

    #[test]
    fn text_report_layout() {
        let want = "\
node: n1

endpoint eth0 (HostEndpoint h1)
  labels: role=web
  expectedIPs: 198.51.100.10
  profiles: (none)
  ports: http tcp/80
  policies:
    ingress: tier sec (end: Pass): s; tier default (end: Deny): b, a
    egress: (none)
    forward ingress: (none)
    forward egress: (none)
    preDNAT ingress: (none)
    untracked ingress: (none)
    untracked egress: (none)

failsafe inbound: tcp:198.51.100.0/24:22
failsafe outbound: (none)

configuration:
  defaultEndpointToHostAction: Drop
  interfacePrefix: cali
  iptablesMarkMask: 0xffff0000
  chainInsertMode: Insert
  iptablesRefreshInterval: 90s
  iptablesPostWriteCheckInterval: 5s
  iptablesBackend: Auto
  ipv6Support: true
  iptablesFilterAllowAction: Accept
  iptablesMangleAllowAction: Accept
  iptablesFilterDenyAction: Drop
  logPrefix: calico-packet
  logActionRateLimit: (none)
  logActionRateLimitBurst: 5
  disableConntrackInvalidCheck: false
  maxIpsetSize: 1048576

warnings:
  - endpoint eth0 (HostEndpoint h1) has no egress policy and no profile: all outbound traffic except failsafe ports will be dropped
";
        assert_eq!(format_text(&small_view()), want);
    }

    #[test]
    fn json_report_shape() {
        let text = format_json(&small_view());
        let v: Value = serde_json::from_str(&text).unwrap();
        // Keys in the order docs/design.md ("Product contract") gives.
        let keys = [
            "\"node\"",
            "\"endpoints\"",
            "\"failsafe\"",
            "\"config\"",
            "\"warnings\"",
        ];
        let pos: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(
            v["endpoints"][0]["policies"],
            json!({
                "ingress": ["s", "b", "a"],
                "egress": [],
                "forwardIngress": [],
                "forwardEgress": [],
                "preDNATIngress": [],
                "untrackedIngress": [],
                "untrackedEgress": [],
            })
        );
        assert_eq!(v["endpoints"][0]["interface"], "eth0");
        assert_eq!(v["endpoints"][0]["labels"], json!({"role": "web"}));
        assert_eq!(v["endpoints"][0]["expectedIPs"], json!(["198.51.100.10"]));
        assert_eq!(
            v["failsafe"],
            json!({"inbound": ["tcp:198.51.100.0/24:22"], "outbound": []})
        );
        assert_eq!(v["config"]["iptablesMarkMask"], "0xffff0000");
        assert_eq!(v["warnings"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn durations_print_like_felix_configuration() {
        assert_eq!(duration(std::time::Duration::from_secs(90)), "90s");
        assert_eq!(duration(std::time::Duration::from_millis(1500)), "1500ms");
    }
}
