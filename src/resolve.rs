//! Resolution for one node: which HostEndpoints are this node's, which interface each governs,
//! which policies apply to each per traffic class and in what order, and the effective
//! FelixConfiguration. Pure: the host's interfaces and addresses come in as data.
//! What `hostfw show` prints and what `render` consumes.

use crate::model::*;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// The host's interfaces and their local addresses, read once by the effect layer.
pub type HostInterfaces = BTreeMap<String, Vec<IpAddr>>;

/// FelixConfiguration with `default` and `node.<name>` merged and built-in defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveConfig {
    pub failsafe_inbound: Vec<FailsafePort>,
    pub failsafe_outbound: Vec<FailsafePort>,
    pub default_endpoint_to_host_action: EndpointToHostAction,
    pub interface_prefix: String,
    pub iptables_mark_mask: u32,
    pub chain_insert_mode: InsertMode,
    pub iptables_refresh_interval: Duration,
    pub iptables_post_write_check_interval: Duration,
    pub iptables_backend: BackendChoice,
    pub ipv6_support: bool,
    pub iptables_filter_allow_action: AllowAction,
    pub iptables_mangle_allow_action: AllowAction,
    pub iptables_filter_deny_action: DenyAction,
    pub log_prefix: String,
    pub log_action_rate_limit: Option<RateLimit>,
    pub log_action_rate_limit_burst: u32,
    pub disable_conntrack_invalid_check: bool,
    pub max_ipset_size: u32,
}

/// The policies of one tier that apply to one endpoint in one traffic class, in evaluation order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierPolicies {
    pub tier: String,
    pub default_action: TierAction,
    /// Policy names, ordered by policy order then name.
    pub policies: Vec<String>,
}

/// Per traffic class, the tiers (in tier order) with at least one applicable policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SelectorSources {
    pub endpoints: Vec<SelectableEndpoint>,
    pub network_sets: Vec<SelectableNetworkSet>,
}

/// A HostEndpoint (of any node) as a rule selector sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectableEndpoint {
    pub name: String,
    pub labels: Labels,
    pub expected_ips: Vec<IpAddr>,
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectableNetworkSet {
    pub name: String,
    pub labels: Labels,
    pub nets: Vec<IpNet>,
}

/// Everything render needs for this node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    pub node: String,
    pub config: EffectiveConfig,
    /// Named-interface endpoints sorted by interface name, then at most one `Any` endpoint last.
    pub endpoints: Vec<ActiveEndpoint>,
    /// Policies referenced by at least one active endpoint, by name.
    pub policies: BTreeMap<String, GlobalNetworkPolicy>,
    /// User profiles referenced by at least one active endpoint, by name.
    pub profiles: BTreeMap<String, Profile>,
    pub selector_sources: SelectorSources,
    pub warnings: Vec<String>,
}
