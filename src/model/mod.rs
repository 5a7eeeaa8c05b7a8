//! The validated resource model: Calico host-protection resources as typed values with Calico's
//! defaults already applied. Pure data; produced only by `policy::validate`, consumed by
//! `resolve` and `render`. Nothing here reads files or knows YAML.

pub mod direction;
pub mod selector;

pub use direction::Direction;

use ipnet::IpNet;
use selector::Selector;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Label (or annotation) map; BTreeMap so every output is deterministic.
pub type Labels = BTreeMap<String, String>;

/// Where a resource was defined, for diagnostics that name both places.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

/// The metadata hostfw keeps: name, labels, annotations and where the resource came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub name: String,
    pub labels: Labels,
    pub annotations: Labels,
    pub origin: Origin,
}

#[cfg(test)]
impl Meta {
    /// Test shorthand: `name` with no labels or annotations, defined at t.yaml:1:1.
    pub(crate) fn for_test(name: &str) -> Meta {
        Meta {
            name: name.into(),
            labels: Labels::new(),
            annotations: Labels::new(),
            origin: Origin {
                file: "t.yaml".into(),
                line: 1,
                column: 1,
            },
        }
    }
}

#[cfg(test)]
impl GlobalNetworkPolicy {
    /// Test shorthand: an Ingress+Egress policy `name` in the default tier, no order, selecting
    /// every endpoint, with no rules.
    pub(crate) fn for_test(name: &str) -> GlobalNetworkPolicy {
        GlobalNetworkPolicy {
            meta: Meta::for_test(name),
            tier: DEFAULT_TIER.into(),
            order: None,
            selector: selector::Selector::all(),
            types: PolicyTypes {
                ingress: true,
                egress: true,
            },
            ingress: vec![],
            egress: vec![],
            do_not_track: false,
            pre_dnat: false,
            apply_on_forward: false,
            assume_needed_on_every_node: false,
        }
    }
}

/// An IP family. Ordered V4 before V6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    pub fn of_net(net: &IpNet) -> IpVersion {
        match net {
            IpNet::V4(_) => IpVersion::V4,
            IpNet::V6(_) => IpVersion::V6,
        }
    }

    pub fn of_addr(addr: &IpAddr) -> IpVersion {
        match addr {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }
}

/// A rule protocol as written: Calico's case-sensitive names, or a number 1-255.
/// A digit string in YAML ("6") is stored as `Number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    IcmpV6,
    Sctp,
    UdpLite,
    Number(u8),
}

impl Protocol {
    /// Whether ports may be used with this protocol (TCP, UDP, SCTP or 6/17/132).
    pub fn supports_ports(self) -> bool {
        matches!(
            self,
            Protocol::Tcp | Protocol::Udp | Protocol::Sctp | Protocol::Number(6 | 17 | 132)
        )
    }

    /// The protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
            Protocol::IcmpV6 => 58,
            Protocol::Sctp => 132,
            Protocol::UdpLite => 136,
            Protocol::Number(n) => n,
        }
    }

    /// How iptables spells it (`-p tcp`, `-p 47`): lower-cased names, numbers as numbers.
    pub fn iptables_name(self) -> String {
        match self {
            Protocol::Tcp => "tcp".into(),
            Protocol::Udp => "udp".into(),
            Protocol::Icmp => "icmp".into(),
            Protocol::IcmpV6 => "icmpv6".into(),
            Protocol::Sctp => "sctp".into(),
            Protocol::UdpLite => "udplite".into(),
            Protocol::Number(n) => n.to_string(),
        }
    }
}

/// A port item of a rule: a number, an inclusive range, or an endpoint's named port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    Single(u16),
    Range(u16, u16),
    Named(String),
}

/// ICMP type and optional code (code requires type, enforced by validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    pub icmp_type: u8,
    pub code: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Allow,
    Deny,
    Log,
    Pass,
}

/// `source` / `destination` of a rule. Nets are strictly masked CIDRs (validated).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityRule {
    pub nets: Box<[IpNet]>,
    pub not_nets: Box<[IpNet]>,
    pub selector: Option<Selector>,
    pub not_selector: Option<Selector>,
    pub ports: Box<[Port]>,
    pub not_ports: Box<[Port]>,
}

/// One policy or profile rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub action: RuleAction,
    pub ip_version: Option<IpVersion>,
    pub protocol: Option<Protocol>,
    pub not_protocol: Option<Protocol>,
    pub icmp: Option<IcmpMatch>,
    pub not_icmp: Option<IcmpMatch>,
    pub source: EntityRule,
    pub destination: EntityRule,
    /// Rule `metadata.annotations`; rendered as `key=value` comments.
    pub annotations: Labels,
}

impl Rule {
    /// A rule with `action` and no criteria, so it matches every packet: the built-in
    /// default-allow profile's rule is `matching_all(Allow)`.
    pub fn matching_all(action: RuleAction) -> Rule {
        Rule {
            action,
            ip_version: None,
            protocol: None,
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            source: EntityRule::default(),
            destination: EntityRule::default(),
            annotations: Labels::new(),
        }
    }
}

/// `interfaceName` of a HostEndpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InterfaceName {
    /// `"*"`: every interface of the host.
    Any,
    Named(String),
}

/// A named port of a HostEndpoint (`spec.ports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostEndpoint {
    pub meta: Meta,
    pub node: String,
    /// None when only `expectedIPs` is given.
    pub interface: Option<InterfaceName>,
    pub expected_ips: Vec<IpAddr>,
    pub profiles: Vec<String>,
    pub ports: Vec<EndpointPort>,
}

/// Which directions a policy governs, after Calico's `types` defaulting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyTypes {
    pub ingress: bool,
    pub egress: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GlobalNetworkPolicy {
    pub meta: Meta,
    /// Tier name; `default` when omitted.
    pub tier: String,
    /// None means +infinity (after every ordered policy).
    pub order: Option<f64>,
    /// Empty selector is stored as `all()`.
    pub selector: Selector,
    pub types: PolicyTypes,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub do_not_track: bool,
    pub pre_dnat: bool,
    pub apply_on_forward: bool,
    /// `performanceHints: [AssumeNeededOnEveryNode]`: the policy's chains are programmed on
    /// every node whether or not a local endpoint uses it (felix/dataplane/linux/policy_mgr.go).
    pub assume_needed_on_every_node: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GlobalNetworkSet {
    pub meta: Meta,
    /// Normalised to network addresses; bare IPs became /32 or /128.
    pub nets: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub meta: Meta,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub labels_to_apply: Labels,
}

/// What happens at the end of a tier when a policy applied but none allowed or passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TierAction {
    Deny,
    Pass,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub meta: Meta,
    /// None means +infinity.
    pub order: Option<f64>,
    pub default_action: TierAction,
}

/// Name and order of the tier that always exists.
pub const DEFAULT_TIER: &str = "default";
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// The tiers Calico v3.32 always creates besides `default` (libcalico-go/lib/clientv3/client.go
/// `ensureTierExists`): name, the order calicoctl enforces for them
/// (libcalico-go/lib/validator/v3/validator.go), default action Pass.
pub const BUILT_IN_PASS_TIERS: [(&str, f64); 2] =
    [("kube-admin", 1_000.0), ("kube-baseline", 10_000_000.0)];
/// The built-in profile that allows everything both ways.
pub const DEFAULT_ALLOW_PROFILE: &str = "projectcalico-default-allow";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailsafeProtocol {
    Tcp,
    Udp,
}

/// One failsafe entry: `{protocol, port, net}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailsafePort {
    pub protocol: FailsafeProtocol,
    pub port: u16,
    /// Normalised to its network address; None = any.
    pub net: Option<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointToHostAction {
    Drop,
    Accept,
    Return,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowAction {
    Accept,
    Return,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyAction {
    Drop,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertMode {
    Insert,
    Append,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Legacy,
    Nft,
}

/// `logActionRateLimit`: N per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: RateUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

/// The FelixConfiguration fields hostfw acts on, exactly as written (None = not set).
/// `failsafe_*`: None = field omitted (defaults), Some(vec![]) = explicitly none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FelixSpec {
    pub failsafe_inbound: Option<Vec<FailsafePort>>,
    pub failsafe_outbound: Option<Vec<FailsafePort>>,
    pub default_endpoint_to_host_action: Option<EndpointToHostAction>,
    pub interface_prefix: Option<String>,
    pub iptables_mark_mask: Option<u32>,
    pub chain_insert_mode: Option<InsertMode>,
    pub iptables_refresh_interval: Option<Duration>,
    pub iptables_post_write_check_interval: Option<Duration>,
    pub iptables_backend: Option<BackendChoice>,
    pub ipv6_support: Option<bool>,
    pub iptables_filter_allow_action: Option<AllowAction>,
    pub iptables_mangle_allow_action: Option<AllowAction>,
    pub iptables_filter_deny_action: Option<DenyAction>,
    pub log_prefix: Option<String>,
    pub log_action_rate_limit: Option<RateLimit>,
    pub log_action_rate_limit_burst: Option<u32>,
    pub disable_conntrack_invalid_check: Option<bool>,
    pub max_ipset_size: Option<u32>,
    pub prometheus_metrics_enabled: Option<bool>,
    /// An address or name; empty = every address.
    pub prometheus_metrics_host: Option<String>,
    pub prometheus_metrics_port: Option<u16>,
    pub prometheus_process_metrics_enabled: Option<bool>,
    pub health_enabled: Option<bool>,
    pub health_host: Option<String>,
    pub health_port: Option<u16>,
    pub log_severity_screen: Option<LogSeverity>,
}

/// `logSeverityScreen`: Felix's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSeverity {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FelixConfiguration {
    pub meta: Meta,
    pub spec: FelixSpec,
}

/// Every valid resource of one policy directory. Each Vec is sorted by name; names are unique
/// per kind (validation rejects duplicates). Policies and network sets are shared, not copied:
/// the daemon's load cache, the set and the resolved view hold the same ones (at 10,000
/// policies one copy is ~30 MB).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    pub host_endpoints: Vec<HostEndpoint>,
    pub policies: Vec<Arc<GlobalNetworkPolicy>>,
    pub network_sets: Vec<Arc<GlobalNetworkSet>>,
    pub profiles: Vec<Profile>,
    pub tiers: Vec<Tier>,
    pub felix_configs: Vec<FelixConfiguration>,
}
