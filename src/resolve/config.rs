//! The effective FelixConfiguration for one node: built-in defaults (with Felix's failsafe
//! port lists), overlaid by FelixConfiguration `default`, then by `node.<name>`. Pure.

use crate::model::*;
use std::time::Duration;

/// FelixConfiguration with `default` and `node.<name>` merged and built-in defaults filled in.
#[derive(Debug, Clone, PartialEq)]
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
    pub prometheus_metrics_enabled: bool,
    pub prometheus_metrics_host: String,
    pub prometheus_metrics_port: u16,
    pub prometheus_process_metrics_enabled: bool,
    pub health_enabled: bool,
    pub health_host: String,
    pub health_port: u16,
    pub log_severity_screen: LogSeverity,
}

/// The control-plane ports both of Felix's default failsafe lists end with, in Felix's order
/// (BGP, etcd client and peer, Typha, kube-apiserver, and 6666/6667 for a self-hosted etcd).
const DEFAULT_FAILSAFE_SHARED: [(FailsafeProtocol, u16); 7] = [
    (FailsafeProtocol::Tcp, 179),
    (FailsafeProtocol::Tcp, 2379),
    (FailsafeProtocol::Tcp, 2380),
    (FailsafeProtocol::Tcp, 5473),
    (FailsafeProtocol::Tcp, 6443),
    (FailsafeProtocol::Tcp, 6666),
    (FailsafeProtocol::Tcp, 6667),
];

/// What Felix's default inbound failsafe list (`FailsafeInboundHostPorts` in
/// felix/config/config_params.go, v3.32.1) puts before the shared ports: SSH and DHCP replies.
/// tcp:5473 (Typha) is kept in the shared part so that a Felix host's failsafe chains are taken
/// over unchanged.
const DEFAULT_FAILSAFE_INBOUND_HEAD: [(FailsafeProtocol, u16); 2] =
    [(FailsafeProtocol::Tcp, 22), (FailsafeProtocol::Udp, 68)];

/// What Felix's default outbound failsafe list (`FailsafeOutboundHostPorts`, same file) puts
/// before the shared ports: DNS and DHCP requests.
const DEFAULT_FAILSAFE_OUTBOUND_HEAD: [(FailsafeProtocol, u16); 2] =
    [(FailsafeProtocol::Udp, 53), (FailsafeProtocol::Udp, 67)];

/// One default failsafe list: its own head, then the shared control-plane ports.
fn failsafe_list(head: &[(FailsafeProtocol, u16)]) -> Vec<FailsafePort> {
    head.iter()
        .chain(&DEFAULT_FAILSAFE_SHARED)
        .map(|&(protocol, port)| FailsafePort {
            protocol,
            port,
            net: None,
        })
        .collect()
}

impl Default for EffectiveConfig {
    /// The built-in defaults, used for every field no FelixConfiguration sets.
    fn default() -> Self {
        EffectiveConfig {
            failsafe_inbound: failsafe_list(&DEFAULT_FAILSAFE_INBOUND_HEAD),
            failsafe_outbound: failsafe_list(&DEFAULT_FAILSAFE_OUTBOUND_HEAD),
            default_endpoint_to_host_action: EndpointToHostAction::Drop,
            interface_prefix: "cali".into(),
            iptables_mark_mask: 0xffff_0000,
            chain_insert_mode: InsertMode::Insert,
            iptables_refresh_interval: Duration::from_secs(90),
            iptables_post_write_check_interval: Duration::from_secs(5),
            iptables_backend: BackendChoice::Auto,
            ipv6_support: true,
            iptables_filter_allow_action: AllowAction::Accept,
            iptables_mangle_allow_action: AllowAction::Accept,
            iptables_filter_deny_action: DenyAction::Drop,
            log_prefix: "calico-packet".into(),
            log_action_rate_limit: None,
            log_action_rate_limit_burst: 5,
            disable_conntrack_invalid_check: false,
            max_ipset_size: 1_048_576,
            // Felix's defaults (felix/config/config_params.go).
            prometheus_metrics_enabled: false,
            prometheus_metrics_host: String::new(),
            prometheus_metrics_port: 9091,
            prometheus_process_metrics_enabled: true,
            health_enabled: false,
            health_host: "localhost".into(),
            health_port: 9099,
            log_severity_screen: LogSeverity::Info,
        }
    }
}

impl EffectiveConfig {
    /// Overlay every field `spec` sets onto `self` (later layers win field by field).
    pub fn overlay(&mut self, spec: &FelixSpec) {
        // Every field but `log_action_rate_limit` is a plain `Option<T>` over `T`; the rate
        // limit is an `Option` on both sides.
        macro_rules! set_each {
            ($($field:ident),* $(,)?) => {
                $(if let Some(v) = &spec.$field {
                    self.$field = v.clone();
                })*
            };
        }
        set_each!(
            failsafe_inbound,
            failsafe_outbound,
            default_endpoint_to_host_action,
            interface_prefix,
            iptables_mark_mask,
            chain_insert_mode,
            iptables_refresh_interval,
            iptables_post_write_check_interval,
            iptables_backend,
            ipv6_support,
            iptables_filter_allow_action,
            iptables_mangle_allow_action,
            iptables_filter_deny_action,
            log_prefix,
            log_action_rate_limit_burst,
            disable_conntrack_invalid_check,
            max_ipset_size,
            prometheus_metrics_enabled,
            prometheus_metrics_host,
            prometheus_metrics_port,
            prometheus_process_metrics_enabled,
            health_enabled,
            health_host,
            health_port,
            log_severity_screen,
        );
        if spec.log_action_rate_limit.is_some() {
            self.log_action_rate_limit = spec.log_action_rate_limit;
        }
    }

    /// The workload interface prefixes: Felix accepts a comma-separated list in `interfacePrefix`.
    pub fn workload_prefixes(&self) -> impl Iterator<Item = &str> {
        self.interface_prefix
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }

    /// Whether `interface` is a workload interface (never a host endpoint).
    pub fn is_workload_interface(&self, interface: &str) -> bool {
        self.workload_prefixes().any(|p| interface.starts_with(p))
    }
}

/// Built-in defaults, overlaid by FelixConfiguration `default`, then by `node.<node>`.
pub fn effective_config(set: &PolicySet, node: &str) -> EffectiveConfig {
    let mut config = EffectiveConfig::default();
    let node_name = format!("node.{node}");
    for layer in ["default", node_name.as_str()] {
        if let Some(fc) = set.felix_configs.iter().find(|fc| fc.meta.name == layer) {
            config.overlay(&fc.spec);
        }
    }
    config
}
