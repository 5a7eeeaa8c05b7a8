//! Resolution for one node: which HostEndpoints are this node's, which interface each governs,
//! which policies apply to each per traffic class and in what order, and the effective
//! FelixConfiguration. Pure: the host's interfaces and addresses come in as data.
//! What `hostfw show` prints and what `render` consumes.
//!
//! Parts: `config` (the effective FelixConfiguration), `assign` (interface assignment), `order`
//! (policy evaluation order), `warnings`; this file walks the endpoints and builds the view.

mod assign;
mod config;
mod order;
mod warnings;

pub use config::{effective_config, EffectiveConfig};

use crate::model::*;
use assign::assign_interfaces;
use ipnet::IpNet;
use order::{order_policies, push_policy};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use warnings::{endpoint_label, nd_warnings, no_policy_warnings, ssh_warning};

/// The host's interfaces and their local addresses, read once by the effect layer.
pub type HostInterfaces = BTreeMap<String, Vec<IpAddr>>;

/// The policies of one tier that apply to one endpoint in one traffic class, in evaluation order.
#[derive(Debug, Clone, PartialEq)]
pub struct TierPolicies {
    pub tier: String,
    pub default_action: TierAction,
    /// Policy names, ordered by policy order, then Felix's name tie-break (`order::tie_break`);
    /// shared, as every endpoint's lists name the same policies.
    pub policies: Vec<Arc<str>>,
}

/// Per traffic class, the tiers (in tier order) with at least one applicable policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointPolicies {
    /// Normal (filter INPUT) ingress: neither doNotTrack nor preDNAT.
    pub ingress: Vec<TierPolicies>,
    /// Normal egress (filter OUTPUT, mangle POSTROUTING for DNAT'd flows).
    pub egress: Vec<TierPolicies>,
    /// applyOnForward normal policies, forwarded traffic arriving on the interface.
    pub forward_ingress: Vec<TierPolicies>,
    /// applyOnForward normal policies, forwarded traffic leaving through the interface.
    pub forward_egress: Vec<TierPolicies>,
    /// preDNAT policies (mangle PREROUTING), ingress only.
    pub pre_dnat_ingress: Vec<TierPolicies>,
    /// doNotTrack policies (raw); always empty for the `*` endpoint.
    pub untracked_ingress: Vec<TierPolicies>,
    pub untracked_egress: Vec<TierPolicies>,
}

/// One interface governed by one HostEndpoint of this node.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveEndpoint {
    /// The HostEndpoint's name.
    pub hep: String,
    /// The interface it governs here: a name, or `Any` for the `*` endpoint.
    pub interface: InterfaceName,
    /// Effective labels: profiles' labelsToApply overlaid by the HEP's own labels.
    pub labels: Labels,
    pub expected_ips: Vec<IpAddr>,
    /// Profiles in HEP order (only those that exist, plus the built-in default-allow).
    pub profiles: Vec<String>,
    pub ports: Vec<EndpointPort>,
    pub policies: EndpointPolicies,
}

/// Addresses a rule selector can match: every node's HostEndpoints and every GlobalNetworkSet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectorSources {
    pub endpoints: Vec<SelectableEndpoint>,
    pub network_sets: Vec<SelectableNetworkSet>,
}

/// A HostEndpoint (of any node) as a rule selector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectableEndpoint {
    pub name: String,
    pub labels: Labels,
    pub expected_ips: Vec<IpAddr>,
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SelectableNetworkSet {
    pub name: String,
    pub labels: Labels,
    pub nets: Vec<IpNet>,
}

/// Everything render needs for this node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub node: String,
    pub config: EffectiveConfig,
    /// Named-interface endpoints sorted by interface name, then at most one `Any` endpoint last.
    pub endpoints: Vec<ActiveEndpoint>,
    /// Policies referenced by at least one active endpoint or marked AssumeNeededOnEveryNode,
    /// by name.
    pub policies: BTreeMap<String, Arc<GlobalNetworkPolicy>>,
    /// User profiles referenced by at least one active endpoint, by name.
    pub profiles: BTreeMap<String, Profile>,
    pub selector_sources: SelectorSources,
    pub warnings: Vec<String>,
}

impl InterfaceName {
    /// How the interface is printed: its name, or `*` for every interface.
    pub fn display(&self) -> &str {
        match self {
            InterfaceName::Any => "*",
            InterfaceName::Named(n) => n,
        }
    }
}

impl EndpointPolicies {
    /// The seven traffic classes with their JSON/text names, in a fixed order.
    pub fn classes(&self) -> [(&'static str, &[TierPolicies]); 7] {
        [
            ("ingress", &self.ingress),
            ("egress", &self.egress),
            ("forwardIngress", &self.forward_ingress),
            ("forwardEgress", &self.forward_egress),
            ("preDNATIngress", &self.pre_dnat_ingress),
            ("untrackedIngress", &self.untracked_ingress),
            ("untrackedEgress", &self.untracked_egress),
        ]
    }
}

/// Policy names of one class flattened in evaluation order (tier order, then policy order).
pub fn flat_names(tiers: &[TierPolicies]) -> Vec<&str> {
    tiers
        .iter()
        .flat_map(|t| t.policies.iter().map(|p| &**p))
        .collect()
}

/// A HostEndpoint's effective labels: its profiles' `labelsToApply`, the first profile winning
/// among profiles (Felix looks parents up in order), and the HEP's own labels over all of them.
/// Profiles that do not exist contribute nothing.
pub fn effective_labels(hep: &HostEndpoint, profiles: &BTreeMap<&str, &Profile>) -> Labels {
    let mut labels = Labels::new();
    for name in hep.profiles.iter().rev() {
        if let Some(p) = profiles.get(name.as_str()) {
            labels.extend(
                p.labels_to_apply
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
    }
    labels.extend(hep.meta.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// policies per traffic class in evaluation order, the effective configuration and warnings.
/// The view shares the referenced policies with the set and copies the profiles (few, small).
pub fn resolve(set: &PolicySet, node: &str, interfaces: &HostInterfaces) -> NodeView {
    let Resolution {
        mut view,
        used_policies,
        used_profiles,
    } = compute(set, node, interfaces);
    view.policies = set
        .policies
        .iter()
        .zip(&used_policies)
        .filter(|(_, used)| **used)
        .map(|(p, _)| (p.meta.name.clone(), p.clone()))
        .collect();
    view.profiles = set
        .profiles
        .iter()
        .zip(&used_profiles)
        .filter(|(_, used)| **used)
        .map(|(p, _)| (p.meta.name.clone(), p.clone()))
        .collect();
    view
}

/// Everything resolution decides; `policies` and `profiles` of `view` are still empty, to be
/// filled from the set by index (`used_*` run parallel to `set.policies` / `set.profiles`).
struct Resolution {
    view: NodeView,
    used_policies: Vec<bool>,
    used_profiles: Vec<bool>,
}

fn compute(set: &PolicySet, node: &str, interfaces: &HostInterfaces) -> Resolution {
    let mut warnings = Vec::new();
    let config = effective_config(set, node);
    let profiles: BTreeMap<&str, &Profile> = set
        .profiles
        .iter()
        .map(|p| (p.meta.name.as_str(), p))
        .collect();
    let profile_index: BTreeMap<&str, usize> = set
        .profiles
        .iter()
        .enumerate()
        .map(|(i, p)| (p.meta.name.as_str(), i))
        .collect();
    let local: Vec<&HostEndpoint> = set
        .host_endpoints
        .iter()
        .filter(|h| h.node == node)
        .collect();
    let assigned = assign_interfaces(&local, interfaces, &config, &mut warnings);
    let (ordered, distinct_selectors) = order_policies(set);

    let mut used_policies = vec![false; set.policies.len()];
    let mut used_profiles = vec![false; set.profiles.len()];
    let mut endpoints = Vec::with_capacity(assigned.len());
    for (interface, hep) in assigned {
        let who = endpoint_label(&interface, &hep.meta.name);
        // An empty map means the interfaces are unknown (not read), not that there are none.
        if let InterfaceName::Named(name) = &interface {
            if !interfaces.is_empty() && !interfaces.contains_key(name) {
                warnings.push(format!(
                    "{who}: no interface {name} on this host yet; its rules are in place and \
                     take effect when it appears"
                ));
            }
        }
        let labels = effective_labels(hep, &profiles);
        let mut profile_names = Vec::new();
        for name in &hep.profiles {
            if name == DEFAULT_ALLOW_PROFILE {
                profile_names.push(name.clone());
            } else if let Some(&i) = profile_index.get(name.as_str()) {
                used_profiles[i] = true;
                profile_names.push(name.clone());
            } else {
                warnings.push(format!(
                    "HostEndpoint {} refers to profile {name}, which does not exist: skipped",
                    hep.meta.name
                ));
            }
        }
        let mut policies = EndpointPolicies::default();
        // Selector evaluation is the only per-(policy, endpoint) cost besides bookkeeping, and
        // it is paid once per distinct selector text.
        let mut selected: Vec<Option<bool>> = vec![None; distinct_selectors];
        for op in &ordered {
            let p = op.policy;
            let matches =
                *selected[op.selector_id].get_or_insert_with(|| p.selector.matches(&labels));
            if !matches {
                continue;
            }
            let mut used = false;
            if p.do_not_track {
                if interface == InterfaceName::Any {
                    warnings.push(format!(
                        "doNotTrack policy {} does not apply to the \"*\" {who}: ignored",
                        p.meta.name
                    ));
                    continue;
                }
                if p.types.ingress {
                    push_policy(&mut policies.untracked_ingress, op);
                    used = true;
                }
                if p.types.egress {
                    push_policy(&mut policies.untracked_egress, op);
                    used = true;
                }
            } else if p.pre_dnat {
                // Felix discards the egress side of preDNAT policies (validation forbids it).
                if p.types.ingress {
                    push_policy(&mut policies.pre_dnat_ingress, op);
                    used = true;
                }
            } else {
                if p.types.ingress {
                    push_policy(&mut policies.ingress, op);
                    if p.apply_on_forward {
                        push_policy(&mut policies.forward_ingress, op);
                    }
                    used = true;
                }
                if p.types.egress {
                    push_policy(&mut policies.egress, op);
                    if p.apply_on_forward {
                        push_policy(&mut policies.forward_egress, op);
                    }
                    used = true;
                }
            }
            if used {
                used_policies[op.index] = true;
            }
        }
        // Which directions some profile could allow (profiles run only when no policy does).
        let profile_allows = |rules: fn(&Profile) -> &[Rule]| {
            profile_names.iter().any(|n| {
                n == DEFAULT_ALLOW_PROFILE
                    || profiles
                        .get(n.as_str())
                        .is_some_and(|p| rules(p).iter().any(|r| r.action == RuleAction::Allow))
            })
        };
        let allows = [
            profile_allows(|p| p.ingress.as_slice()),
            profile_allows(|p| p.egress.as_slice()),
        ];
        no_policy_warnings(
            &who,
            &policies,
            !profile_names.is_empty(),
            allows,
            &mut warnings,
        );
        endpoints.push(ActiveEndpoint {
            hep: hep.meta.name.clone(),
            interface,
            labels,
            expected_ips: hep.expected_ips.clone(),
            profiles: profile_names,
            ports: hep.ports.clone(),
            policies,
        });
    }

    // Felix sends these to the dataplane whether or not a local endpoint uses them, and
    // programs their filter chains (felix/calc/active_rules_calculator.go
    // policyForceProgrammed, felix/dataplane/linux/policy_mgr.go).
    for (used, p) in used_policies.iter_mut().zip(&set.policies) {
        *used |= p.assume_needed_on_every_node;
    }

    if let Some(w) = ssh_warning(set, &config, &endpoints) {
        warnings.push(w);
    }
    warnings.extend(nd_warnings(set, &config, &endpoints));
    if local.is_empty() {
        warnings.push(format!(
            "no HostEndpoint has spec.node {node:?}: hostfw filters no traffic on this host"
        ));
    }

    let selector_sources = SelectorSources {
        endpoints: set
            .host_endpoints
            .iter()
            .map(|h| SelectableEndpoint {
                name: h.meta.name.clone(),
                labels: effective_labels(h, &profiles),
                expected_ips: h.expected_ips.clone(),
                ports: h.ports.clone(),
            })
            .collect(),
        network_sets: set
            .network_sets
            .iter()
            .map(|s| SelectableNetworkSet {
                name: s.meta.name.clone(),
                labels: s.meta.labels.clone(),
                nets: s.nets.clone(),
            })
            .collect(),
    };

    Resolution {
        view: NodeView {
            node: node.to_string(),
            config,
            endpoints,
            policies: BTreeMap::new(),
            profiles: BTreeMap::new(),
            selector_sources,
            warnings,
        },
        used_policies,
        used_profiles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::selector::Selector;
    use std::time::Duration;

    fn meta(name: &str, labels: &[(&str, &str)]) -> Meta {
        Meta {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Labels::new(),
            origin: Origin {
                file: "test.yaml".into(),
                line: 1,
                column: 1,
            },
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A HostEndpoint; `iface` "*" is the wildcard, "" means expectedIPs only.
    fn hep(name: &str, node: &str, iface: &str, ips: &[&str]) -> HostEndpoint {
        HostEndpoint {
            meta: meta(name, &[("role", "web")]),
            node: node.into(),
            interface: match iface {
                "" => None,
                "*" => Some(InterfaceName::Any),
                n => Some(InterfaceName::Named(n.into())),
            },
            expected_ips: ips.iter().map(|s| ip(s)).collect(),
            profiles: vec![],
            ports: vec![],
        }
    }

    /// A normal Ingress+Egress policy in the default tier selecting every endpoint.
    fn gnp(name: &str) -> GlobalNetworkPolicy {
        GlobalNetworkPolicy {
            meta: meta(name, &[]),
            ..GlobalNetworkPolicy::for_test(name)
        }
    }

    fn gnp_in(name: &str, tier: &str, order: Option<f64>) -> GlobalNetworkPolicy {
        GlobalNetworkPolicy {
            tier: tier.into(),
            order,
            ..gnp(name)
        }
    }

    fn tier(name: &str, order: Option<f64>, action: TierAction) -> Tier {
        Tier {
            meta: meta(name, &[]),
            order,
            default_action: action,
        }
    }

    fn ifaces(list: &[(&str, &[&str])]) -> HostInterfaces {
        list.iter()
            .map(|(n, ips)| (n.to_string(), ips.iter().map(|s| ip(s)).collect()))
            .collect()
    }

    fn set(heps: Vec<HostEndpoint>, policies: Vec<GlobalNetworkPolicy>) -> PolicySet {
        PolicySet {
            host_endpoints: heps,
            policies: policies.into_iter().map(Arc::new).collect(),
            ..PolicySet::default()
        }
    }

    /// (interface, hep) of every active endpoint, in view order.
    fn active(view: &NodeView) -> Vec<(String, String)> {
        view.endpoints
            .iter()
            .map(|e| (e.interface.display().to_string(), e.hep.clone()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn names(tiers: &[TierPolicies]) -> Vec<&str> {
        flat_names(tiers)
    }

    #[test]
    fn interface_assignment_table() {
        struct Case {
            what: &'static str,
            heps: Vec<HostEndpoint>,
            host: HostInterfaces,
            want: Vec<(String, String)>,
        }
        let cases = vec![
            Case {
                what: "named interface is active even when the host lacks it (docs/felix-layout.md, Deviations)",
                heps: vec![hep("h1", "n1", "eth9", &[])],
                host: ifaces(&[("eth0", &["198.51.100.10"])]),
                want: pairs(&[("eth9", "h1")]),
            },
            Case {
                what: "two HEPs on one interface: the smallest name wins",
                heps: vec![
                    hep("b-hep", "n1", "eth0", &[]),
                    hep("a-hep", "n1", "eth0", &[]),
                ],
                host: ifaces(&[("eth0", &[])]),
                want: pairs(&[("eth0", "a-hep")]),
            },
            Case {
                what: "expectedIPs-only HEP governs every interface carrying one of its IPs",
                heps: vec![hep("h1", "n1", "", &["198.51.100.10", "2001:db8::10"])],
                host: ifaces(&[
                    ("eth0", &["198.51.100.10"]),
                    ("eth1", &["203.0.113.5"]),
                    ("eth2", &["2001:db8::10"]),
                ]),
                want: pairs(&[("eth0", "h1"), ("eth2", "h1")]),
            },
            Case {
                what: "a HEP naming another interface never matches by IP",
                heps: vec![hep("h1", "n1", "eth1", &["198.51.100.10"])],
                host: ifaces(&[("eth0", &["198.51.100.10"]), ("eth1", &[])]),
                want: pairs(&[("eth1", "h1")]),
            },
            Case {
                what: "named and IP-matched HEPs compete by name",
                heps: vec![
                    hep("z-named", "n1", "eth0", &[]),
                    hep("a-byip", "n1", "", &["198.51.100.10"]),
                ],
                host: ifaces(&[("eth0", &["198.51.100.10"])]),
                want: pairs(&[("eth0", "a-byip")]),
            },
            Case {
                what: "HEPs of other nodes are ignored",
                heps: vec![hep("h1", "n2", "eth0", &[]), hep("h2", "n1", "eth1", &[])],
                host: ifaces(&[("eth0", &[]), ("eth1", &[])]),
                want: pairs(&[("eth1", "h2")]),
            },
            Case {
                what: "at most one * HEP, the smallest name, placed after named ones",
                heps: vec![
                    hep("b-all", "n1", "*", &[]),
                    hep("a-all", "n1", "*", &[]),
                    hep("z-eth0", "n1", "eth0", &[]),
                ],
                host: ifaces(&[("eth0", &[])]),
                want: pairs(&[("eth0", "z-eth0"), ("*", "a-all")]),
            },
            Case {
                what: "workload interfaces (prefix cali) are never HEP interfaces",
                heps: vec![
                    hep("h1", "n1", "", &["198.51.100.10"]),
                    hep("h2", "n1", "cali1234", &[]),
                ],
                host: ifaces(&[("cali0abc", &["198.51.100.10"])]),
                want: vec![],
            },
            Case {
                what: "named interfaces sorted by name",
                heps: vec![hep("a", "n1", "eth1", &[]), hep("b", "n1", "bond0", &[])],
                host: HostInterfaces::new(),
                want: pairs(&[("bond0", "b"), ("eth1", "a")]),
            },
        ];
        for c in cases {
            let mut heps = c.heps;
            heps.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
            let view = resolve(&set(heps, vec![]), "n1", &c.host);
            assert_eq!(active(&view), c.want, "{}", c.what);
        }
    }

    #[test]
    fn assignment_warnings_name_loser_winner_and_unmatched() {
        let s = set(
            vec![
                hep("a-all", "n1", "*", &[]),
                hep("a-hep", "n1", "eth0", &[]),
                hep("b-all", "n1", "*", &[]),
                hep("b-hep", "n1", "eth0", &[]),
                hep("c-byip", "n1", "", &["203.0.113.99"]),
                hep("d-wl", "n1", "cali12", &[]),
                hep("e-on-wl", "n1", "", &["203.0.113.77"]),
                hep("other", "n2", "eth0", &[]),
            ],
            vec![gnp("p")],
        );
        let host = ifaces(&[("eth0", &["198.51.100.10"]), ("cali9", &["203.0.113.77"])]);
        let view = resolve(&s, "n1", &host);
        assert_eq!(
            view.warnings,
            vec![
                "HostEndpoint c-byip has no interfaceName and no interface on this host carries \
                 one of its expectedIPs: it governs nothing here",
                "HostEndpoint d-wl names interface cali12, which matches interfacePrefix \"cali\" \
                 (a workload interface): ignored",
                "HostEndpoint e-on-wl has no interfaceName and its expectedIPs are only on \
                 workload interfaces (interfacePrefix \"cali\"): it governs nothing here",
                "HostEndpoint b-hep does not govern eth0: HostEndpoint a-hep does (the smallest \
                 name wins)",
                "HostEndpoint b-all is not active: only one \"*\" HostEndpoint is used per node \
                 and a-all sorts first",
            ]
        );
        // The other node's HEP is not mentioned anywhere.
        assert!(view.warnings.iter().all(|w| !w.contains("other")));
    }

    #[test]
    fn tiers_then_policy_order_then_name() {
        let tiers = vec![
            tier("aaa-last", None, TierAction::Deny),
            tier("security", Some(100.0), TierAction::Pass),
            tier("zzz-last", None, TierAction::Deny),
        ];
        let policies = vec![
            gnp_in("d-unordered", DEFAULT_TIER, None),
            gnp_in("c-10", DEFAULT_TIER, Some(10.0)),
            gnp_in("b-10", DEFAULT_TIER, Some(10.0)),
            gnp_in("a-neg", DEFAULT_TIER, Some(-5.5)),
            // -0 equals 0: the name decides, as in Felix.
            gnp_in("zero-b", DEFAULT_TIER, Some(-0.0)),
            gnp_in("zero-a", DEFAULT_TIER, Some(0.0)),
            gnp_in("sec-2", "security", Some(2.0)),
            gnp_in("sec-1", "security", Some(1.0)),
            gnp_in("last-a", "aaa-last", Some(0.0)),
            gnp_in("last-z", "zzz-last", Some(0.0)),
        ];
        let s = PolicySet {
            tiers,
            ..set(vec![hep("h", "n1", "eth0", &[])], policies)
        };
        let view = resolve(&s, "n1", &HostInterfaces::new());
        let ing = &view.endpoints[0].policies.ingress;
        let summary: Vec<(&str, TierAction, Vec<&str>)> = ing
            .iter()
            .map(|t| {
                (
                    t.tier.as_str(),
                    t.default_action,
                    t.policies.iter().map(|p| &**p).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("security", TierAction::Pass, vec!["sec-1", "sec-2"]),
                (
                    "default",
                    TierAction::Deny,
                    vec!["a-neg", "zero-a", "zero-b", "b-10", "c-10", "d-unordered"]
                ),
                ("aaa-last", TierAction::Deny, vec!["last-a"]),
                ("zzz-last", TierAction::Deny, vec!["last-z"]),
            ]
        );
        assert_eq!(view.endpoints[0].policies.egress, *ing);
    }

    #[test]
    fn equal_orders_compare_name_slash_namespace_slash_kind() {
        // felix/calc/policy_sorter.go `PolKVLess` (v3.32): `web-2/` < `web.x/` < `web/` <
        // `web0/`, where a plain name comparison gives web, web-2, web.x, web0.
        let policies = ["web", "web0", "web.x", "web-2"]
            .into_iter()
            .map(|n| gnp_in(n, DEFAULT_TIER, Some(10.0)))
            .collect();
        let s = set(vec![hep("h", "n1", "eth0", &[])], policies);
        let view = resolve(&s, "n1", &HostInterfaces::new());
        let names: Vec<&str> = view.endpoints[0].policies.ingress[0]
            .policies
            .iter()
            .map(|p| &**p)
            .collect();
        assert_eq!(names, ["web-2", "web.x", "web", "web0"]);
    }

    #[test]
    fn explicit_default_tier_keeps_its_order_and_may_pass() {
        let s = PolicySet {
            tiers: vec![
                tier(DEFAULT_TIER, None, TierAction::Pass),
                tier("after", Some(2_000_000.0), TierAction::Deny),
            ],
            ..set(
                vec![hep("h", "n1", "eth0", &[])],
                vec![gnp_in("late", "after", None), gnp("early")],
            )
        };
        let view = resolve(&s, "n1", &HostInterfaces::new());
        let ing = &view.endpoints[0].policies.ingress;
        assert_eq!(names(ing), ["early", "late"]);
        assert_eq!(ing[0].default_action, TierAction::Pass);
    }

    #[test]
    fn traffic_classes_follow_policy_flags() {
        let ingress_only = PolicyTypes {
            ingress: true,
            egress: false,
        };
        let egress_only = PolicyTypes {
            ingress: false,
            egress: true,
        };
        let policies = vec![
            GlobalNetworkPolicy {
                do_not_track: true,
                apply_on_forward: true,
                ..gnp("dnt")
            },
            GlobalNetworkPolicy {
                pre_dnat: true,
                apply_on_forward: true,
                types: ingress_only,
                ..gnp("pre")
            },
            GlobalNetworkPolicy {
                apply_on_forward: true,
                ..gnp("fwd")
            },
            GlobalNetworkPolicy {
                types: egress_only,
                ..gnp("out")
            },
            GlobalNetworkPolicy {
                types: ingress_only,
                ..gnp("in")
            },
        ];
        let mut s = set(
            vec![
                hep("h-all", "n1", "*", &[]),
                hep("h-eth0", "n1", "eth0", &[]),
            ],
            policies,
        );
        s.host_endpoints
            .sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        let view = resolve(&s, "n1", &HostInterfaces::new());
        let eth0 = &view.endpoints[0].policies;
        assert_eq!(names(&eth0.ingress), ["fwd", "in"]);
        assert_eq!(names(&eth0.egress), ["fwd", "out"]);
        assert_eq!(names(&eth0.forward_ingress), ["fwd"]);
        assert_eq!(names(&eth0.forward_egress), ["fwd"]);
        assert_eq!(names(&eth0.pre_dnat_ingress), ["pre"]);
        assert_eq!(names(&eth0.untracked_ingress), ["dnt"]);
        assert_eq!(names(&eth0.untracked_egress), ["dnt"]);
        // Untracked and preDNAT lists carry the tier action; render treats them as Pass.
        assert_eq!(eth0.untracked_ingress[0].default_action, TierAction::Deny);

        let any = &view.endpoints[1];
        assert_eq!(any.interface, InterfaceName::Any);
        assert!(any.policies.untracked_ingress.is_empty());
        assert!(any.policies.untracked_egress.is_empty());
        assert_eq!(names(&any.policies.pre_dnat_ingress), ["pre"]);
        assert!(view.warnings.contains(
            &"doNotTrack policy dnt does not apply to the \"*\" endpoint * (HostEndpoint h-all): \
              ignored"
                .to_string()
        ));
        assert_eq!(
            view.policies.keys().collect::<Vec<_>>(),
            ["dnt", "fwd", "in", "out", "pre"]
        );
    }

    #[test]
    fn shared_selector_text_is_evaluated_per_endpoint() {
        let mut db = hep("a-db", "n1", "eth0", &[]);
        db.meta.labels = meta("x", &[("role", "db")]).labels;
        let web = hep("b-web", "n1", "eth1", &[]);
        let s = set(
            vec![db, web],
            vec![
                selecting("db-1", "role == 'db'"),
                selecting("db-2", "role == 'db'"),
                selecting("web", "role == 'web'"),
            ],
        );
        let view = resolve(&s, "n1", &HostInterfaces::new());
        let got: Vec<Vec<&str>> = view
            .endpoints
            .iter()
            .map(|e| names(&e.policies.ingress))
            .collect();
        assert_eq!(got, vec![vec!["db-1", "db-2"], vec!["web"]]);
    }

    #[test]
    fn the_view_holds_the_used_policies_shared_with_the_set() {
        let mut h = hep("h1", "n1", "eth0", &[]);
        h.profiles = vec!["used".into()];
        let s = PolicySet {
            profiles: vec![profile("unused", &[]), profile("used", &[("a", "b")])],
            ..set(
                vec![h],
                vec![
                    selecting("match", "a == 'b'"),
                    selecting("no-match", "a == 'c'"),
                ],
            )
        };
        let view = resolve(&s, "n1", &HostInterfaces::new());
        assert_eq!(view.policies.keys().collect::<Vec<_>>(), ["match"]);
        assert_eq!(view.profiles.keys().collect::<Vec<_>>(), ["used"]);
        let in_set = s.policies.iter().find(|p| p.meta.name == "match");
        assert!(in_set.is_some_and(|p| Arc::ptr_eq(p, &view.policies["match"])));
    }

    #[test]
    fn assume_needed_on_every_node_keeps_an_unused_policy() {
        let forced = GlobalNetworkPolicy {
            assume_needed_on_every_node: true,
            ..gnp("forced")
        };
        let s = PolicySet {
            host_endpoints: vec![],
            ..set(vec![], vec![gnp("p"), forced])
        };
        let view = resolve(&s, "n1", &HostInterfaces::new());
        assert_eq!(view.policies.keys().collect::<Vec<_>>(), ["forced"]);
    }

    #[test]
    fn policies_map_holds_only_referenced_policies() {
        let s = PolicySet {
            host_endpoints: vec![],
            ..set(vec![], vec![gnp("p")])
        };
        let view = resolve(&s, "n1", &HostInterfaces::new());
        assert!(view.policies.is_empty());
        assert!(view.endpoints.is_empty());
        assert_eq!(
            view.warnings,
            ["no HostEndpoint has spec.node \"n1\": hostfw filters no traffic on this host"]
        );
    }

    fn profile(name: &str, labels: &[(&str, &str)]) -> Profile {
        Profile {
            meta: meta(name, &[]),
            ingress: vec![],
            egress: vec![],
            labels_to_apply: meta("x", labels).labels,
        }
    }

    #[test]
    fn profiles_labels_and_missing_profiles() {
        let mut h = hep("h1", "n1", "eth0", &[]);
        h.meta.labels = meta("x", &[("role", "own")]).labels;
        h.profiles = vec![
            "first".into(),
            "missing".into(),
            DEFAULT_ALLOW_PROFILE.into(),
            "second".into(),
        ];
        let s = PolicySet {
            profiles: vec![
                profile("first", &[("env", "first"), ("role", "from-profile")]),
                profile("second", &[("env", "second"), ("zone", "b")]),
                profile("unused", &[]),
            ],
            ..set(vec![h], vec![])
        };
        let view = resolve(&s, "n1", &HostInterfaces::new());
        let ep = &view.endpoints[0];
        assert_eq!(
            ep.labels,
            meta("x", &[("env", "first"), ("role", "own"), ("zone", "b")]).labels
        );
        assert_eq!(ep.profiles, ["first", DEFAULT_ALLOW_PROFILE, "second"]);
        assert_eq!(
            view.profiles.keys().collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert_eq!(
            view.warnings,
            ["HostEndpoint h1 refers to profile missing, which does not exist: skipped"]
        );
        assert_eq!(view.selector_sources.endpoints[0].labels, ep.labels);
    }

    #[test]
    fn no_policy_warnings_per_direction() {
        let ingress_only = GlobalNetworkPolicy {
            types: PolicyTypes {
                ingress: true,
                egress: false,
            },
            ..gnp("in")
        };
        let pre = GlobalNetworkPolicy {
            pre_dnat: true,
            apply_on_forward: true,
            ..ingress_only.clone()
        };
        let cases: Vec<(&str, Vec<GlobalNetworkPolicy>, Vec<&str>)> = vec![
            (
                "nothing at all",
                vec![],
                vec![
                    "endpoint eth0 (HostEndpoint h1) has no ingress policy and no profile: all \
                     inbound traffic except failsafe ports will be dropped",
                    "endpoint eth0 (HostEndpoint h1) has no egress policy and no profile: all \
                     outbound traffic except failsafe ports will be dropped",
                ],
            ),
            (
                "ingress only",
                vec![ingress_only],
                vec![
                    "endpoint eth0 (HostEndpoint h1) has no egress policy and no profile: all \
                     outbound traffic except failsafe ports will be dropped",
                ],
            ),
            (
                "preDNAT only",
                vec![GlobalNetworkPolicy {
                    meta: meta("pre", &[]),
                    ..pre
                }],
                vec![
                    "endpoint eth0 (HostEndpoint h1) has no normal ingress policy and no \
                     profile: inbound traffic that no preDNAT or doNotTrack policy allows will \
                     be dropped, except failsafe ports",
                    "endpoint eth0 (HostEndpoint h1) has no egress policy and no profile: all \
                     outbound traffic except failsafe ports will be dropped",
                ],
            ),
            ("both directions", vec![gnp("both")], vec![]),
        ];
        for (what, policies, want) in cases {
            let view = resolve(
                &set(vec![hep("h1", "n1", "eth0", &[])], policies),
                "n1",
                &HostInterfaces::new(),
            );
            assert_eq!(view.warnings, want, "{what}");
        }
        // A profile that allows (even the built-in default-allow) silences them.
        let mut h = hep("h1", "n1", "eth0", &[]);
        h.profiles = vec![DEFAULT_ALLOW_PROFILE.into()];
        let view = resolve(&set(vec![h], vec![]), "n1", &HostInterfaces::new());
        assert!(view.warnings.is_empty(), "{:?}", view.warnings);
        // A profile that only applies labels, or allows only inbound, does not.
        let mut h = hep("h1", "n1", "eth0", &[]);
        h.profiles = vec!["labels-only".into(), "in-only".into()];
        let s = PolicySet {
            profiles: vec![
                Profile {
                    ingress: vec![Rule::matching_all(RuleAction::Allow)],
                    ..profile("in-only", &[])
                },
                profile("labels-only", &[("a", "b")]),
            ],
            ..set(vec![h], vec![])
        };
        let view = resolve(&s, "n1", &HostInterfaces::new());
        assert_eq!(
            view.warnings,
            [
                "endpoint eth0 (HostEndpoint h1) has no egress policy and its profiles allow no \
              outbound traffic: all outbound traffic except failsafe ports will be dropped"
            ]
        );
    }

    fn felix(name: &str, spec: FelixSpec) -> FelixConfiguration {
        FelixConfiguration {
            meta: meta(name, &[]),
            spec,
        }
    }

    #[test]
    fn builtin_defaults_match_design() {
        let c = EffectiveConfig::default();
        let show = |l: &[FailsafePort]| {
            l.iter()
                .map(|f| format!("{:?}:{}", f.protocol, f.port))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            show(&c.failsafe_inbound),
            "Tcp:22,Udp:68,Tcp:179,Tcp:2379,Tcp:2380,Tcp:5473,Tcp:6443,Tcp:6666,Tcp:6667"
        );
        assert_eq!(
            show(&c.failsafe_outbound),
            "Udp:53,Udp:67,Tcp:179,Tcp:2379,Tcp:2380,Tcp:5473,Tcp:6443,Tcp:6666,Tcp:6667"
        );
        assert_eq!(
            c.default_endpoint_to_host_action,
            EndpointToHostAction::Drop
        );
        assert_eq!(c.interface_prefix, "cali");
        assert_eq!(c.iptables_mark_mask, 0xffff0000);
        assert_eq!(c.chain_insert_mode, InsertMode::Insert);
        assert_eq!(c.iptables_refresh_interval, Duration::from_secs(90));
        assert_eq!(c.iptables_post_write_check_interval, Duration::from_secs(5));
        assert_eq!(c.iptables_backend, BackendChoice::Auto);
        assert!(c.ipv6_support);
        assert_eq!(c.iptables_filter_allow_action, AllowAction::Accept);
        assert_eq!(c.iptables_mangle_allow_action, AllowAction::Accept);
        assert_eq!(c.iptables_filter_deny_action, DenyAction::Drop);
        assert_eq!(c.log_prefix, "calico-packet");
        assert_eq!(c.log_action_rate_limit, None);
        assert_eq!(c.log_action_rate_limit_burst, 5);
        assert!(!c.disable_conntrack_invalid_check);
        assert_eq!(c.max_ipset_size, 1_048_576);
    }

    #[test]
    fn node_felix_configuration_overrides_default_field_by_field() {
        let ssh_from = FailsafePort {
            protocol: FailsafeProtocol::Tcp,
            port: 22,
            net: Some("198.51.100.0/24".parse().unwrap()),
        };
        let s = PolicySet {
            felix_configs: vec![
                felix(
                    "default",
                    FelixSpec {
                        log_prefix: Some("default-prefix".into()),
                        iptables_filter_deny_action: Some(DenyAction::Reject),
                        failsafe_outbound: Some(vec![]),
                        ..FelixSpec::default()
                    },
                ),
                felix(
                    "node.n1",
                    FelixSpec {
                        log_prefix: Some("n1-prefix".into()),
                        failsafe_inbound: Some(vec![ssh_from.clone()]),
                        ..FelixSpec::default()
                    },
                ),
                felix(
                    "node.n2",
                    FelixSpec {
                        ipv6_support: Some(false),
                        ..FelixSpec::default()
                    },
                ),
            ],
            ..PolicySet::default()
        };
        let c = effective_config(&s, "n1");
        assert_eq!(c.log_prefix, "n1-prefix");
        assert_eq!(c.iptables_filter_deny_action, DenyAction::Reject);
        assert_eq!(c.failsafe_inbound, vec![ssh_from]);
        assert!(c.failsafe_outbound.is_empty());
        assert!(c.ipv6_support, "node.n2 must not apply to n1");
        let other = effective_config(&s, "n3");
        assert_eq!(other.log_prefix, "default-prefix");
        assert_eq!(
            other.failsafe_inbound,
            EffectiveConfig::default().failsafe_inbound
        );
    }

    #[test]
    fn interface_prefix_from_configuration_changes_workload_detection() {
        let s = PolicySet {
            felix_configs: vec![felix(
                "default",
                FelixSpec {
                    interface_prefix: Some("veth,tap".into()),
                    ..FelixSpec::default()
                },
            )],
            ..set(
                vec![
                    hep("a", "n1", "", &["198.51.100.10"]),
                    hep("b", "n1", "cali0", &[]),
                ],
                vec![gnp("p")],
            )
        };
        let host = ifaces(&[("tap3", &["198.51.100.10"]), ("eth0", &["198.51.100.10"])]);
        let view = resolve(&s, "n1", &host);
        assert_eq!(active(&view), pairs(&[("cali0", "b"), ("eth0", "a")]));
        assert_eq!(
            view.warnings,
            [
                "endpoint cali0 (HostEndpoint b): no interface cali0 on this host yet; its rules \
              are in place and take effect when it appears"
            ]
        );
    }

    #[test]
    fn ssh_lockout_warning() {
        let no_failsafe = felix(
            "default",
            FelixSpec {
                failsafe_inbound: Some(vec![]),
                ..FelixSpec::default()
            },
        );
        let tcp_rule = |ports: Vec<Port>| Rule {
            protocol: Some(Protocol::Tcp),
            destination: EntityRule {
                ports: ports.into(),
                ..EntityRule::default()
            },
            ..Rule::matching_all(RuleAction::Allow)
        };
        let warning = "failsafeInboundHostPorts does not include tcp:22 and no ingress policy \
                       or profile allows TCP port 22: SSH to this host will be blocked";
        let cases: Vec<(&str, Vec<Rule>, bool)> = vec![
            ("no rules", vec![], true),
            (
                "tcp 8080 only",
                vec![tcp_rule(vec![Port::Single(8080)])],
                true,
            ),
            ("tcp 22", vec![tcp_rule(vec![Port::Single(22)])], false),
            (
                "tcp range 1:1024",
                vec![tcp_rule(vec![Port::Range(1, 1024)])],
                false,
            ),
            (
                "allow everything",
                vec![Rule::matching_all(RuleAction::Allow)],
                false,
            ),
            (
                "udp 22",
                vec![Rule {
                    protocol: Some(Protocol::Udp),
                    ..tcp_rule(vec![Port::Single(22)])
                }],
                true,
            ),
            (
                "deny tcp 22",
                vec![Rule {
                    action: RuleAction::Deny,
                    ..tcp_rule(vec![Port::Single(22)])
                }],
                true,
            ),
        ];
        for (what, rules, want) in cases {
            let s = PolicySet {
                felix_configs: vec![no_failsafe.clone()],
                ..set(
                    vec![hep("h1", "n1", "eth0", &[])],
                    vec![GlobalNetworkPolicy {
                        ingress: rules,
                        ..gnp("p")
                    }],
                )
            };
            let view = resolve(&s, "n1", &HostInterfaces::new());
            assert_eq!(view.warnings.iter().any(|w| w == warning), want, "{what}");
        }
        // Default failsafe ports keep SSH open: no warning even with no policy allowing it.
        let view = resolve(
            &set(vec![hep("h1", "n1", "eth0", &[])], vec![gnp("p")]),
            "n1",
            &HostInterfaces::new(),
        );
        assert!(view.warnings.is_empty(), "{:?}", view.warnings);
    }

    /// A dual-stack endpoint whose ingress policy allows only TCP leaves neighbour discovery to
    /// the default drop: warned; an ICMPv6 type 135/136 (or any-protocol) allow silences it.
    #[test]
    fn ipv6_neighbour_discovery_warning() {
        let mut endpoint = hep("h1", "n1", "eth0", &[]);
        endpoint.expected_ips = vec!["2001:db8::1".parse().unwrap()];
        let icmp6 = |icmp_type: u8| Rule {
            protocol: Some(Protocol::IcmpV6),
            icmp: Some(IcmpMatch {
                icmp_type,
                code: None,
            }),
            ..Rule::matching_all(RuleAction::Allow)
        };
        let tcp = Rule {
            protocol: Some(Protocol::Tcp),
            ..Rule::matching_all(RuleAction::Allow)
        };
        let cases: Vec<(&str, Vec<Rule>, bool)> = vec![
            ("tcp only", vec![tcp.clone()], true),
            ("echo only", vec![tcp.clone(), icmp6(128)], true),
            (
                "ND allowed",
                vec![tcp.clone(), icmp6(135), icmp6(136)],
                false,
            ),
            (
                "all allowed",
                vec![Rule::matching_all(RuleAction::Allow)],
                false,
            ),
        ];
        for (what, rules, want) in cases {
            let s = set(
                vec![endpoint.clone()],
                vec![GlobalNetworkPolicy {
                    ingress: rules,
                    egress: vec![Rule::matching_all(RuleAction::Allow)],
                    ..gnp("p")
                }],
            );
            let view = resolve(&s, "n1", &HostInterfaces::new());
            let warned = view
                .warnings
                .iter()
                .any(|w| w.contains("neighbour discovery") && w.contains("(ingress)"));
            assert_eq!(warned, want, "{what}: {:?}", view.warnings);
        }
    }

    fn selecting(name: &str, selector: &str) -> GlobalNetworkPolicy {
        GlobalNetworkPolicy {
            selector: Selector::parse(selector).unwrap(),
            ..gnp(name)
        }
    }

    #[test]
    fn policy_selectors_see_effective_labels() {
        let mut eth0 = hep("h-eth0", "n1", "eth0", &[]);
        eth0.meta.labels = meta("x", &[("role", "db")]).labels;
        eth0.profiles = vec!["prod".into()];
        let mut eth1 = hep("h-eth1", "n1", "eth1", &[]);
        eth1.meta.labels = meta("x", &[("role", "web"), ("env", "dev")]).labels;
        eth1.profiles = vec!["prod".into()];
        let s = PolicySet {
            profiles: vec![profile("prod", &[("env", "production")])],
            ..set(
                vec![eth0, eth1],
                vec![
                    selecting("by-profile-label", "env == 'production'"),
                    selecting("db-only", "role == 'db'"),
                    selecting("nobody", "role == 'mail'"),
                    selecting("not-db", "role != 'db'"),
                ],
            )
        };
        let view = resolve(&s, "n1", &HostInterfaces::new());
        let got: Vec<(&str, Vec<&str>)> = view
            .endpoints
            .iter()
            .map(|e| (e.hep.as_str(), names(&e.policies.ingress)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("h-eth0", vec!["by-profile-label", "db-only"]),
                // The HEP's own env=dev beats the profile's env=production.
                ("h-eth1", vec!["not-db"]),
            ]
        );
        assert_eq!(
            view.policies.keys().collect::<Vec<_>>(),
            ["by-profile-label", "db-only", "not-db"]
        );
    }

    #[test]
    fn selector_sources_cover_every_node_and_network_set() {
        let mut s = set(
            vec![
                hep("a", "n1", "eth0", &["198.51.100.10"]),
                hep("b", "n2", "eth0", &["198.51.100.11"]),
            ],
            vec![gnp("p")],
        );
        s.network_sets = vec![Arc::new(GlobalNetworkSet {
            meta: meta("blocked", &[("deny", "yes")]),
            nets: vec!["203.0.113.0/24".parse().unwrap()],
        })];
        let view = resolve(&s, "n1", &HostInterfaces::new());
        let eps: Vec<(&str, &[IpAddr])> = view
            .selector_sources
            .endpoints
            .iter()
            .map(|e| (e.name.as_str(), e.expected_ips.as_slice()))
            .collect();
        assert_eq!(
            eps,
            vec![
                ("a", &[ip("198.51.100.10")][..]),
                ("b", &[ip("198.51.100.11")][..])
            ]
        );
        assert_eq!(view.selector_sources.network_sets.len(), 1);
        assert_eq!(view.selector_sources.network_sets[0].name, "blocked");
        assert_eq!(
            view.selector_sources.network_sets[0].labels,
            meta("x", &[("deny", "yes")]).labels
        );
    }
}
