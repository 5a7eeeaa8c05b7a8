//! Rules and their parts (EntityRule, ports, protocol, ICMP, CIDRs, selectors) with Calico
//! v3.32.1's checks; shared by GlobalNetworkPolicy and Profile. Pure.

use super::names::{
    annotation_key_problem, iana_problem, parse_cidr, parse_ip, MAX_ANNOTATION_BYTES,
};
use super::reader::{fields, integer, list, parse_int, string, string_map, Ctx, FieldPath, Schema};
use crate::diag::Severity;
use crate::model::selector::{Selector, SelectorError};
use crate::model::{EntityRule, IcmpMatch, IpVersion, Labels, Port, Protocol, Rule, RuleAction};
use crate::policy::parse::Node;
use ipnet::IpNet;

/// Longest selector accepted. Calico v3.32.1 has no limit (master: 1024 characters); hostfw caps
/// selectors so that hostile input cannot make parsing and ipset naming expensive.
pub(crate) const MAX_SELECTOR_CHARS: usize = 65_536;

const RULE: Schema<'static> = Schema::of(&[
    "action",
    "ipVersion",
    "protocol",
    "notProtocol",
    "icmp",
    "notICMP",
    "source",
    "destination",
    "http",
    "metadata",
]);

const ENTITY: Schema<'static> = Schema::of(&[
    "nets",
    "notNets",
    "selector",
    "notSelector",
    "ports",
    "notPorts",
    "namespaceSelector",
    "serviceAccounts",
    "services",
]);

const ICMP: Schema<'static> = Schema::of(&["type", "code"]);
const RULE_META: Schema<'static> = Schema::of(&["annotations"]);

/// Read a list of rules (`ingress`, `egress`); invalid rules are reported and left out.
pub(crate) fn rules(ctx: &mut Ctx, node: Option<&Node>, path: &FieldPath) -> Vec<Rule> {
    let Some(node) = node else {
        return Vec::new();
    };
    let Some(items) = list(ctx, node, path) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(r) = rule(ctx, item, &path.index(i)) {
            out.push(r);
        }
    }
    out
}

/// Families seen so far in one rule's CIDRs, for the no-mixing and ipVersion checks.
struct Families {
    ip_version: Option<IpVersion>,
    first: Option<IpVersion>,
}

fn rule(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<Rule> {
    let before = ctx.errors;
    let f = fields(ctx, node, path, &RULE)?;

    let action = match f.get("action") {
        None => {
            ctx.error(
                node,
                &path.field("action"),
                "action is required (Allow, Deny, Log or Pass)",
            );
            None
        }
        Some(n) => {
            let p = path.field("action");
            match string(ctx, n, &p) {
                Some("Allow") => Some(RuleAction::Allow),
                Some("Deny") => Some(RuleAction::Deny),
                Some("Log") => Some(RuleAction::Log),
                Some("Pass") => Some(RuleAction::Pass),
                Some(other) => {
                    let hint = ["Allow", "Deny", "Log", "Pass"]
                        .iter()
                        .find(|a| a.eq_ignore_ascii_case(other))
                        .map(|a| format!(" (case-sensitive: write `{a}`)"))
                        .unwrap_or_default();
                    ctx.error(
                        n,
                        &p,
                        format!("action `{other}` is invalid: use Allow, Deny, Log or Pass{hint}"),
                    );
                    None
                }
                None => None,
            }
        }
    };

    let ip_version = f.get("ipVersion").and_then(|n| {
        let p = path.field("ipVersion");
        match integer(ctx, n, &p, i128::MIN, i128::MAX)? {
            4 => Some(IpVersion::V4),
            6 => Some(IpVersion::V6),
            v => {
                ctx.error(n, &p, format!("ipVersion must be 4 or 6, found {v}"));
                None
            }
        }
    });

    let protocol = f
        .get("protocol")
        .and_then(|n| protocol_value(ctx, n, &path.field("protocol")));
    let not_protocol = f
        .get("notProtocol")
        .and_then(|n| protocol_value(ctx, n, &path.field("notProtocol")));
    for (proto, field, n) in [
        (protocol, "protocol", f.get("protocol")),
        (not_protocol, "notProtocol", f.get("notProtocol")),
    ] {
        let (Some(proto), Some(n)) = (proto, n) else {
            continue;
        };
        let p = path.field(field);
        match (proto, ip_version) {
            (Protocol::Icmp, Some(IpVersion::V6)) => {
                ctx.error(n, &p, "ICMP cannot be used with ipVersion 6 (use ICMPv6)")
            }
            (Protocol::IcmpV6, Some(IpVersion::V4)) => {
                ctx.error(n, &p, "ICMPv6 cannot be used with ipVersion 4 (use ICMP)")
            }
            _ => {}
        }
    }

    let icmp = f.get("icmp").and_then(|n| {
        let p = path.field("icmp");
        let m = icmp_match(ctx, n, &p);
        if !matches!(protocol, Some(Protocol::Icmp | Protocol::IcmpV6)) {
            ctx.error(
                n,
                &p,
                "icmp requires protocol ICMP or ICMPv6 (by name; Calico v3.32 refuses the numbers 1 and 58 here)",
            );
        }
        m
    });
    let not_icmp = f
        .get("notICMP")
        .and_then(|n| icmp_match(ctx, n, &path.field("notICMP")));

    if let Some(n) = f.get("http") {
        ctx.error(
            n,
            &path.field("http"),
            "http matches need Calico's application-layer (Envoy) proxy; hostfw enforces with \
             iptables only and cannot match HTTP methods or paths",
        );
    }

    let annotations = f
        .get("metadata")
        .map(|n| {
            let p = path.field("metadata");
            fields(ctx, n, &p, &RULE_META)
                .and_then(|m| m.get("annotations"))
                .map(|a| annotations(ctx, a, &p.field("annotations")))
                .unwrap_or_default()
        })
        .unwrap_or_default();

    let mut families = Families {
        ip_version,
        first: None,
    };
    let source = f
        .get("source")
        .map(|n| entity(ctx, n, &path.field("source"), &mut families, protocol))
        .unwrap_or_default();
    let destination = f
        .get("destination")
        .map(|n| entity(ctx, n, &path.field("destination"), &mut families, protocol))
        .unwrap_or_default();

    if ctx.errors > before {
        return None;
    }
    Some(Rule {
        action: action?,
        ip_version,
        protocol,
        not_protocol,
        icmp,
        not_icmp,
        source,
        destination,
        annotations,
    })
}

/// `protocol` / `notProtocol`: a number 1-255 (also as a digit string) or a case-sensitive name.
pub(crate) fn protocol_value(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<Protocol> {
    let Some(s) = node.as_scalar() else {
        ctx.wrong_shape(node, path, "a protocol name or number");
        return None;
    };
    let text = &*s.text;
    let numeric = text.starts_with(|c: char| c.is_ascii_digit());
    if numeric {
        let n = if s.plain {
            parse_int(text)
        } else if text.bytes().all(|b| b.is_ascii_digit()) && text.len() < 30 {
            text.parse::<i128>().map_err(|e| e.to_string())
        } else {
            Err(format!("protocol `{text}` is invalid"))
        };
        return match n {
            Ok(0) => {
                ctx.error(node, path, "protocol number 0 is not allowed (use 1-255)");
                None
            }
            Ok(n) if (1..=255).contains(&n) => Some(Protocol::Number(n as u8)),
            Ok(n) => {
                ctx.error(
                    node,
                    path,
                    format!("protocol number {n} is out of range (1 to 255)"),
                );
                None
            }
            Err(msg) => {
                ctx.error(node, path, msg);
                None
            }
        };
    }
    let text = string(ctx, node, path)?;
    let p = match text {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "ICMP" => Protocol::Icmp,
        "ICMPv6" => Protocol::IcmpV6,
        "SCTP" => Protocol::Sctp,
        "UDPLite" => Protocol::UdpLite,
        other => {
            let names = ["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"];
            let hint = names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(other))
                .map(|n| format!("; names are case-sensitive: write `{n}`"))
                .unwrap_or_else(|| {
                    "; use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255".into()
                });
            ctx.error(
                node,
                path,
                format!("protocol name `{other}` is invalid{hint}"),
            );
            return None;
        }
    };
    Some(p)
}

fn icmp_match(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<IcmpMatch> {
    let f = fields(ctx, node, path, &ICMP)?;
    let icmp_type = f
        .get("type")
        .and_then(|n| integer(ctx, n, &path.field("type"), 0, 254))
        .map(|v| v as u8);
    let code = f
        .get("code")
        .and_then(|n| integer(ctx, n, &path.field("code"), 0, 255))
        .map(|v| v as u8);
    if let (Some(n), None) = (f.get("code"), f.get("type")) {
        ctx.error(n, &path.field("code"), "an ICMP code requires an ICMP type");
        return None;
    }
    Some(IcmpMatch {
        icmp_type: icmp_type?,
        code,
    })
}

/// Object or rule annotations: keys are qualified names (checked lowercased), values free-form,
/// at most 256 KiB in total.
pub(crate) fn annotations(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Labels {
    let Some(entries) = string_map(ctx, node, path) else {
        return Labels::new();
    };
    let mut out = Labels::new();
    let mut total = 0usize;
    for (k, key, _, value) in entries {
        if let Some(problem) = annotation_key_problem(key) {
            ctx.error(k, &path.key(key), problem);
        }
        total += key.len() + value.len();
        out.insert(key.to_string(), value.to_string());
    }
    if total > MAX_ANNOTATION_BYTES {
        ctx.error(
            node,
            path,
            format!(
                "annotations total {total} bytes, more than the 256 KiB ({MAX_ANNOTATION_BYTES} bytes) limit"
            ),
        );
    }
    out
}

/// A selector field. Returns Some(None) for an empty selector.
pub(crate) fn selector(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<Option<Selector>> {
    let text = string(ctx, node, path)?;
    if text.chars().count() > MAX_SELECTOR_CHARS {
        ctx.error(
            node,
            path,
            format!("selector is longer than {MAX_SELECTOR_CHARS} characters"),
        );
        return None;
    }
    if text.contains("global(") {
        ctx.error(
            node,
            path,
            "global() may only be used in a rule's namespaceSelector",
        );
        return None;
    }
    if text.trim_matches([' ', '\t']).is_empty() {
        return Some(None);
    }
    if let Some(s) = ctx.selectors.get(text) {
        return Some(Some(s.clone()));
    }
    match Selector::parse(text) {
        Ok(s) => {
            ctx.selectors.insert(text.to_string(), s.clone());
            Some(Some(s))
        }
        Err(e) => {
            // Point at the offending character when the value is a verbatim copy of its line.
            let at = node
                .as_scalar()
                .and_then(|s| s.text_column)
                .and_then(|c| {
                    text.get(..e.offset)
                        .map(|before| c + before.chars().count() as u32)
                })
                .map_or((node.line, node.column), |c| (node.line, c));
            ctx.report_at(Severity::Error, at, path, format!("invalid selector: {e}"));
            None
        }
    }
}

/// The selector Calico gives a rule entity with `namespaceSelector: global()`
/// (libcalico-go/lib/backend/syncersv1/updateprocessors/rules.go `getEndpointSelector`):
/// `!has(projectcalico.org/namespace)` — host endpoints and global network sets only — joined
/// to the entity's own selector as `(ns) && (selector)`.
fn global_only(selector: Option<&Selector>) -> Result<Selector, SelectorError> {
    const NOT_NAMESPACED: &str = "!has(projectcalico.org/namespace)";
    let text = match selector {
        Some(s) => format!("({NOT_NAMESPACED}) && ({})", s.source()),
        None => NOT_NAMESPACED.to_string(),
    };
    Selector::parse(&text)
}

fn entity(
    ctx: &mut Ctx,
    node: &Node,
    path: &FieldPath,
    families: &mut Families,
    protocol: Option<Protocol>,
) -> EntityRule {
    let Some(f) = fields(ctx, node, path, &ENTITY) else {
        return EntityRule::default();
    };
    let mut out = EntityRule::default();
    // Gathered here, kept at their exact length (a policy set holds every rule's lists).
    let (mut nets, mut not_nets, mut ports, mut not_ports) = (vec![], vec![], vec![], vec![]);
    for (name, strict_not) in [("nets", false), ("notNets", true)] {
        let Some(n) = f.get(name) else { continue };
        let p = path.field(name);
        let Some(items) = list(ctx, n, &p) else {
            continue;
        };
        for (j, item) in items.iter().enumerate() {
            let ip = p.index(j);
            if let Some(net) = rule_cidr(ctx, item, &ip, families, strict_not) {
                if name == "nets" {
                    nets.push(net);
                } else {
                    not_nets.push(net);
                }
            }
        }
    }
    if let Some(n) = f.get("selector") {
        out.selector = selector(ctx, n, &path.field("selector")).flatten();
    }
    if let Some(n) = f.get("notSelector") {
        out.not_selector = selector(ctx, n, &path.field("notSelector")).flatten();
    }
    for name in ["ports", "notPorts"] {
        let Some(n) = f.get(name) else { continue };
        let p = path.field(name);
        let Some(items) = list(ctx, n, &p) else {
            continue;
        };
        // Port rules as v3.32: a protocol without ports forbids every port item; no protocol
        // forbids numbers and ranges but allows named ports (they resolve against endpoints).
        if let Some(proto) = protocol.filter(|p| !p.supports_ports()) {
            if !items.is_empty() {
                ctx.error(
                    n,
                    &p,
                    format!(
                        "rules that specify ports must set protocol to TCP, UDP or SCTP (protocol is {})",
                        proto.iptables_name()
                    ),
                );
                continue;
            }
        }
        for (j, item) in items.iter().enumerate() {
            let ip = p.index(j);
            if let Some(port) = port(ctx, item, &ip) {
                if protocol.is_none() && !matches!(port, Port::Named(_)) {
                    ctx.error(
                        item,
                        &ip,
                        "rules with a numeric port or port range must set protocol to TCP, UDP or SCTP",
                    );
                    continue;
                }
                if name == "ports" {
                    ports.push(port);
                } else {
                    not_ports.push(port);
                }
            }
        }
    }
    if let Some(n) = f.get("namespaceSelector") {
        let p = path.field("namespaceSelector");
        match string(ctx, n, &p) {
            Some(s) if s.trim().is_empty() => {}
            Some(s) if Selector::parse(s).is_ok_and(|sel| sel.is_global()) => {
                match global_only(out.selector.as_ref()) {
                    Ok(sel) => out.selector = Some(sel),
                    Err(e) => ctx.error(n, &p, format!("cannot combine with the selector: {e}")),
                }
            }
            Some(_) => ctx.error(
                n,
                &p,
                "namespaceSelector selects Kubernetes namespaces; host endpoints and global \
                 network sets have none, so hostfw accepts only `global()` (which selects \
                 exactly them) rather than guess",
            ),
            None => {}
        }
    }
    if let Some(n) = f.get("serviceAccounts") {
        ctx.error(
            n,
            &path.field("serviceAccounts"),
            "serviceAccounts match Kubernetes pods only; a host has no service account",
        );
    }
    if let Some(n) = f.get("services") {
        ctx.error(
            n,
            &path.field("services"),
            "services match Kubernetes Services, which do not exist without Kubernetes",
        );
    }
    out.nets = nets.into();
    out.not_nets = not_nets.into();
    out.ports = ports.into();
    out.not_ports = not_ports.into();
    out
}

/// A rule CIDR: strictly masked, with a `/`, of one family per rule (and of `ipVersion`).
fn rule_cidr(
    ctx: &mut Ctx,
    node: &Node,
    path: &FieldPath,
    families: &mut Families,
    not_nets: bool,
) -> Option<IpNet> {
    let text = string(ctx, node, path)?;
    if !text.contains('/') {
        let hint = if parse_ip(text).is_some() {
            let bits = if text.contains(':') { 128 } else { 32 };
            format!("; write `{text}/{bits}` for a single address")
        } else {
            String::new()
        };
        ctx.error(
            node,
            path,
            format!("`{text}` is not a CIDR (rule nets need a prefix length){hint}"),
        );
        return None;
    }
    let net = match parse_cidr(text) {
        Some(n) => n,
        None => {
            ctx.error(node, path, format!("`{text}` is not a valid CIDR"));
            return None;
        }
    };
    if net.trunc() != net {
        ctx.error(
            node,
            path,
            format!(
                "`{text}` has host bits set (Calico requires strictly masked CIDRs in rules); did you mean `{}`?",
                net.trunc()
            ),
        );
        return None;
    }
    let family = IpVersion::of_net(&net);
    if let Some(v) = families.ip_version {
        if v != family {
            ctx.error(
                node,
                path,
                format!("`{text}` does not match the rule's ipVersion"),
            );
            return None;
        }
    }
    match families.first {
        None => families.first = Some(family),
        Some(f) if f != family => {
            ctx.error(
                node,
                path,
                format!("`{text}` mixes IPv4 and IPv6 CIDRs in one rule; split the rule by family"),
            );
            return None;
        }
        Some(_) => {}
    }
    if not_nets && (text == "0.0.0.0/0" || (family == IpVersion::V6 && net.prefix_len() == 0)) {
        ctx.error(
            node,
            path,
            format!("`{text}` in notNets matches every address, so the rule could never match"),
        );
        return None;
    }
    Some(net)
}

/// One port item: a number 1-65535, a range `a:b`, or an IANA-style port name.
pub(crate) fn port(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<Port> {
    let Some(s) = node.as_scalar() else {
        ctx.error(
            node,
            path,
            format!(
                "expected a port, range or port name, found {}",
                node.shape()
            ),
        );
        return None;
    };
    let text = &*s.text;
    let numeric = text.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        || (s.plain
            && (text.starts_with("0x") || text.starts_with("0o") || text.starts_with("0b")));
    if !text.is_empty() && numeric {
        let n = if s.plain {
            parse_int(text)
        } else if text.bytes().all(|b| b.is_ascii_digit()) && text.len() < 30 {
            text.parse::<i128>().map_err(|e| e.to_string())
        } else {
            Err(format!("`{text}` is not a port number"))
        };
        return match n {
            Ok(0) => {
                ctx.error(node, path, "port 0 is not allowed");
                None
            }
            Ok(n) if (1..=65535).contains(&n) => Some(Port::Single(n as u16)),
            Ok(n) => {
                ctx.error(node, path, format!("port {n} is out of range (1 to 65535)"));
                None
            }
            Err(msg) => {
                ctx.error(node, path, msg);
                None
            }
        };
    }
    if let Some((a, b)) = text.split_once(':') {
        let parse = |x: &str| {
            (!x.is_empty() && x.len() <= 5 && x.bytes().all(|c| c.is_ascii_digit()))
                .then(|| x.parse::<u32>().ok())
                .flatten()
        };
        let (Some(lo), Some(hi)) = (parse(a), parse(b)) else {
            ctx.error(
                node,
                path,
                format!("port range `{text}` must be two numbers `min:max`"),
            );
            return None;
        };
        if lo == 0 {
            ctx.error(
                node,
                path,
                format!("port range `{text}` starts at 0 (ports start at 1)"),
            );
            return None;
        }
        if lo > 65535 || hi > 65535 {
            ctx.error(node, path, format!("port range `{text}` goes beyond 65535"));
            return None;
        }
        if lo > hi {
            ctx.error(
                node,
                path,
                format!("port range `{text}` has its minimum above its maximum"),
            );
            return None;
        }
        return Some(if lo == hi {
            Port::Single(lo as u16)
        } else {
            Port::Range(lo as u16, hi as u16)
        });
    }
    let name = string(ctx, node, path)?;
    if let Some(problem) = iana_problem(name) {
        ctx.error(node, path, problem);
        return None;
    }
    Some(Port::Named(name.to_string()))
}
