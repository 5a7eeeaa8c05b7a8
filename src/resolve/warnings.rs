//! Resolution warnings that need the whole endpoint picture: endpoints with no policy in a
//! direction, the SSH lock-out heuristic, and IPv6 neighbour discovery left to the default
//! drop. Pure.

use super::{flat_names, ActiveEndpoint, EffectiveConfig, EndpointPolicies};
use crate::model::*;
use std::collections::{BTreeMap, HashMap};

/// How an endpoint is named in warnings.
pub(super) fn endpoint_label(interface: &InterfaceName, hep: &str) -> String {
    format!("endpoint {} (HostEndpoint {hep})", interface.display())
}

/// Whether an ingress rule could allow TCP port 22 (used only for the SSH lock-out warning).
pub(super) fn may_allow_ssh(rule: &Rule) -> bool {
    let tcp = |p: Protocol| p.number() == 6;
    let proto_ok = rule.protocol.is_none_or(tcp) && !rule.not_protocol.is_some_and(tcp);
    let port_hit = |p: &Port| match p {
        Port::Single(n) => *n == 22,
        Port::Range(a, b) => (*a..=*b).contains(&22),
        Port::Named(_) => true,
    };
    let dst = &rule.destination;
    let port_ok = (dst.ports.is_empty() || dst.ports.iter().any(port_hit))
        && !dst.not_ports.iter().any(|p| {
            matches!(p, Port::Single(22))
                || matches!(p, Port::Range(a, b) if (*a..=*b).contains(&22))
        });
    rule.action == RuleAction::Allow && proto_ok && port_ok && rule.icmp.is_none()
}

/// Warnings for an endpoint whose normal ingress or egress has no policy and no profile that
/// could allow anything in that direction (`profile_allows`: [ingress, egress]): Felix drops
/// that direction, after failsafe ports and any preDNAT/untracked allow.
pub(super) fn no_policy_warnings(
    who: &str,
    policies: &EndpointPolicies,
    has_profiles: bool,
    profile_allows: [bool; 2],
    warnings: &mut Vec<String>,
) {
    let early_ingress =
        !policies.pre_dnat_ingress.is_empty() || !policies.untracked_ingress.is_empty();
    let early_egress = !policies.untracked_egress.is_empty();
    for (class, dir, normal, early, allowed) in [
        (
            "ingress",
            "inbound",
            &policies.ingress,
            early_ingress,
            profile_allows[0],
        ),
        (
            "egress",
            "outbound",
            &policies.egress,
            early_egress,
            profile_allows[1],
        ),
    ] {
        if !normal.is_empty() || allowed {
            continue;
        }
        let why = if has_profiles {
            format!("its profiles allow no {dir} traffic")
        } else {
            "no profile".to_string()
        };
        warnings.push(if early {
            format!(
                "{who} has no normal {class} policy and {why}: {dir} traffic that no preDNAT \
                 or doNotTrack policy allows will be dropped, except failsafe ports"
            )
        } else {
            format!(
                "{who} has no {class} policy and {why}: all {dir} traffic except failsafe \
                 ports will be dropped"
            )
        });
    }
}

/// A warning when inbound failsafe ports no longer keep SSH open and nothing else obviously
/// does: the classic way to lock oneself out of a host.
pub(super) fn ssh_warning(
    set: &PolicySet,
    config: &EffectiveConfig,
    endpoints: &[ActiveEndpoint],
) -> Option<String> {
    if endpoints.is_empty()
        || config
            .failsafe_inbound
            .iter()
            .any(|f| f.protocol == FailsafeProtocol::Tcp && f.port == 22)
    {
        return None;
    }
    let (policies, profiles) = by_name(set);
    let allowed = endpoints.iter().any(|ep| {
        let by_policy = [
            &ep.policies.ingress,
            &ep.policies.pre_dnat_ingress,
            &ep.policies.untracked_ingress,
        ]
        .into_iter()
        .flat_map(|tiers| flat_names(tiers))
        .filter_map(|n| policies.get(n))
        .any(|p| p.ingress.iter().any(may_allow_ssh));
        // Profiles run only when no policy applies in that direction.
        let by_profile = ep.policies.ingress.is_empty()
            && ep.profiles.iter().any(|n| {
                n == DEFAULT_ALLOW_PROFILE
                    || profiles
                        .get(n.as_str())
                        .is_some_and(|p| p.ingress.iter().any(may_allow_ssh))
            });
        by_policy || by_profile
    });
    (!allowed).then(|| {
        "failsafeInboundHostPorts does not include tcp:22 and no ingress policy or profile \
         allows TCP port 22: SSH to this host will be blocked"
            .to_string()
    })
}

/// ICMPv6 neighbour solicitation and advertisement.
const ND_TYPES: [u8; 2] = [135, 136];

/// Whether a rule could allow ICMPv6 neighbour discovery from (or to) any neighbour: an Allow
/// for ICMPv6 (or any protocol) without an ICMP type other than 135/136 and without source or
/// destination restrictions (ND comes from link-local and solicited-node addresses).
fn may_allow_nd(rule: &Rule) -> bool {
    let v6_icmp = |p: Protocol| p.number() == 58;
    let unrestricted = |e: &EntityRule| e.nets.is_empty() && e.selector.is_none();
    rule.action == RuleAction::Allow
        && rule.ip_version != Some(IpVersion::V4)
        && rule.protocol.is_none_or(v6_icmp)
        && !rule.not_protocol.is_some_and(v6_icmp)
        && rule
            .icmp
            .as_ref()
            .is_none_or(|i| ND_TYPES.contains(&i.icmp_type) && i.code.is_none_or(|c| c == 0))
        && rule.not_icmp.is_none()
        && unrestricted(&rule.source)
        && unrestricted(&rule.destination)
}

/// Warnings for IPv6 endpoints whose policies leave neighbour discovery to the default drop.
/// The kernel does not track NS/NA (conntrack marks them UNTRACKED), so neither RELATED,
/// ESTABLISHED nor the failsafe ports admit them: IPv6 sessions die when a neighbour entry
/// expires and new IPv6 logins fail. Felix behaves the same; hostfw says so.
pub(super) fn nd_warnings(
    set: &PolicySet,
    config: &EffectiveConfig,
    endpoints: &[ActiveEndpoint],
) -> Vec<String> {
    if !config.ipv6_support {
        return Vec::new();
    }
    let (policies, profiles) = by_name(set);
    // Whether each policy's ingress and egress rules may allow ND, judged once per policy
    // rather than once per endpoint that lists it (20 endpoints x 10,000 policies).
    let allows: HashMap<&str, [bool; 2]> = policies
        .iter()
        .map(|(name, p)| {
            let any = |rules: &[Rule]| rules.iter().any(may_allow_nd);
            (*name, [any(&p.ingress), any(&p.egress)])
        })
        .collect();
    let mut out = Vec::new();
    for ep in endpoints {
        // Dual-stack as far as the set says: an IPv6 expectedIP (the lockout guard, which sees
        // the interfaces' addresses, covers endpoints known by interface name alone).
        if !ep.expected_ips.iter().any(|ip| ip.is_ipv6()) {
            continue;
        }
        let mut lacking = Vec::new();
        for (dir, normal, early, side) in [
            (
                "ingress",
                &ep.policies.ingress,
                vec![
                    &ep.policies.pre_dnat_ingress,
                    &ep.policies.untracked_ingress,
                ],
                0,
            ),
            (
                "egress",
                &ep.policies.egress,
                vec![&ep.policies.untracked_egress],
                1,
            ),
        ] {
            let by_policy = std::iter::once(normal)
                .chain(early)
                .flat_map(|tiers| flat_names(tiers))
                .filter_map(|n| allows.get(n))
                .any(|a| a[side]);
            let by_profile = normal.is_empty()
                && ep.profiles.iter().any(|n| {
                    n == DEFAULT_ALLOW_PROFILE
                        || profiles.get(n.as_str()).is_some_and(|p| {
                            let rules = if dir == "ingress" {
                                &p.ingress
                            } else {
                                &p.egress
                            };
                            rules.iter().any(may_allow_nd)
                        })
                });
            if !by_policy && !by_profile {
                lacking.push(dir);
            }
        }
        if !lacking.is_empty() {
            let dirs = lacking.join(" and ");
            out.push(format!(
                "{}: no {dirs} policy allows ICMPv6 neighbour discovery (types 135, 136): the \
                 kernel does not track it, so neither the failsafe ports nor \
                 RELATED,ESTABLISHED admit it, and IPv6 neighbours (SSH sessions included) \
                 become unreachable when their neighbour entry expires; allow `protocol: \
                 ICMPv6` with `icmp: {{type: 135}}` and `{{type: 136}}` ({dirs})",
                endpoint_label(&ep.interface, &ep.hep)
            ));
        }
    }
    out
}

/// The set's policies and profiles by name, for looking up an endpoint's resolved lists.
fn by_name(
    set: &PolicySet,
) -> (
    BTreeMap<&str, &GlobalNetworkPolicy>,
    BTreeMap<&str, &Profile>,
) {
    let policies = set
        .policies
        .iter()
        .map(|p| (p.meta.name.as_str(), &**p))
        .collect();
    let profiles = set
        .profiles
        .iter()
        .map(|p| (p.meta.name.as_str(), p))
        .collect();
    (policies, profiles)
}
