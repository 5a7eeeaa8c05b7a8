//! FelixConfiguration: the host-protection subset hostfw acts on, typed and checked as Calico
//! v3.32.1 (plus Felix's own parse of failsafe entries); every other Calico field is accepted
//! with a warning naming it, still type-checked where its type is known. Pure.

use super::names::{parse_cidr, parse_ip};
use super::reader::{boolean, fields, integer, list, number, string, Ctx, FieldPath, Schema};
use super::rule;
use crate::model::{
    AllowAction, BackendChoice, DenyAction, EndpointToHostAction, FailsafePort, FailsafeProtocol,
    FelixSpec, InsertMode, LogSeverity, Port, RateLimit, RateUnit,
};
use crate::policy::parse::Node;
use ipnet::IpNet;
use std::time::Duration;

/// Fewest mark bits hostfw accepts in `iptablesMarkMask`: Felix (v3.30+) allocates accept, pass,
/// drop, scratch0 and scratch1 from the mask, and hostfw renders the same five bits; with fewer
/// the chains could not carry their verdicts.
pub(crate) const MIN_MARK_BITS: u32 = 5;

const HANDLED: [&str; 27] = [
    "failsafeInboundHostPorts",
    "failsafeOutboundHostPorts",
    "defaultEndpointToHostAction",
    "interfacePrefix",
    "iptablesMarkMask",
    "chainInsertMode",
    "iptablesRefreshInterval",
    "iptablesPostWriteCheckInterval",
    "iptablesBackend",
    "ipv6Support",
    "iptablesFilterAllowAction",
    "iptablesMangleAllowAction",
    "iptablesFilterDenyAction",
    "logPrefix",
    "logActionRateLimit",
    "logActionRateLimitBurst",
    "disableConntrackInvalidCheck",
    "maxIpsetSize",
    "prometheusMetricsEnabled",
    "prometheusMetricsHost",
    "prometheusMetricsPort",
    "prometheusProcessMetricsEnabled",
    "healthEnabled",
    "healthHost",
    "healthPort",
    "logSeverityScreen",
    // Not a Calico v3 field but Felix's config-file/environment name, in seconds
    // (felix/config/config_params.go): accepted with a warning pointing at the v3 spelling, since
    // operators copy it from a Felix configuration.
    "iptablesPostWriteCheckIntervalSecs",
];

/// Calico FelixConfiguration fields (api/pkg/apis/projectcalico/v3/felixconfig.go) that mean
/// nothing to a host firewall without workloads, tunnels or BPF.
const IGNORED: &[&str] = &[
    "useInternalDataplaneDriver",
    "dataplaneDriver",
    "dataplaneWatchdogTimeout",
    "routeRefreshInterval",
    "interfaceRefreshInterval",
    "iptablesLockFilePath",
    "iptablesLockTimeout",
    "iptablesLockProbeInterval",
    "featureDetectOverride",
    "featureGates",
    "ipsetsRefreshInterval",
    "xdpRefreshInterval",
    "netlinkTimeout",
    "metadataAddr",
    "metadataPort",
    "openstackRegion",
    "interfaceExclude",
    "logFilePath",
    "logSeverityFile",
    "logSeveritySys",
    "logDebugFilenameRegex",
    "ipipEnabled",
    "ipipMTU",
    "vxlanEnabled",
    "vxlanMTU",
    "vxlanMTUV6",
    "vxlanPort",
    "vxlanVNI",
    "allowVXLANPacketsFromWorkloads",
    "allowIPIPPacketsFromWorkloads",
    "reportingInterval",
    "reportingTTL",
    "endpointReportingEnabled",
    "endpointReportingDelay",
    "endpointStatusPathPrefix",
    "healthTimeoutOverrides",
    "prometheusGoMetricsEnabled",
    "prometheusWireGuardMetricsEnabled",
    "kubeNodePortRanges",
    "policySyncPathPrefix",
    "usageReportingEnabled",
    "usageReportingInitialDelay",
    "usageReportingInterval",
    "natPortRange",
    "natOutgoingAddress",
    "deviceRouteSourceAddress",
    "deviceRouteSourceAddressIPv6",
    "deviceRouteProtocol",
    "removeExternalRoutes",
    "ipForwarding",
    "externalNodesList",
    "debugMemoryProfilePath",
    "debugDisableLogDropping",
    "debugSimulateCalcGraphHangAfter",
    "debugSimulateDataplaneHangAfter",
    "debugSimulateDataplaneApplyDelay",
    "debugHost",
    "debugPort",
    "iptablesNATOutgoingInterfaceFilter",
    "sidecarAccelerationEnabled",
    "xdpEnabled",
    "genericXDPEnabled",
    "nftablesMode",
    "nftablesRefreshInterval",
    "nftablesFilterAllowAction",
    "nftablesMangleAllowAction",
    "nftablesFilterDenyAction",
    "nftablesMarkMask",
    "bpfEnabled",
    "bpfDisableUnprivileged",
    "bpfLogLevel",
    "bpfLogFilters",
    "bpfCTLBLogFilter",
    "bpfDataIfacePattern",
    "bpfL3IfacePattern",
    "bpfConnectTimeLoadBalancingEnabled",
    "bpfConnectTimeLoadBalancing",
    "bpfHostNetworkedNATWithoutCTLB",
    "bpfExternalServiceMode",
    "bpfDSROptoutCIDRs",
    "bpfExtToServiceConnmark",
    "bpfKubeProxyIptablesCleanupEnabled",
    "bpfKubeProxyMinSyncPeriod",
    "bpfKubeProxyEndpointSlicesEnabled",
    "bpfPSNATPorts",
    "bpfMapSizeNATFrontend",
    "bpfMapSizeNATBackend",
    "bpfMapSizeNATAffinity",
    "bpfMapSizeRoute",
    "bpfMapSizeConntrack",
    "bpfMapSizeIPSets",
    "bpfMapSizeIfState",
    "bpfHostConntrackBypass",
    "bpfEnforceRPF",
    "bpfPolicyDebugEnabled",
    "bpfForceTrackPacketsFromIfaces",
    "bpfDisableGROForIfaces",
    "bpfExcludeCIDRsFromNAT",
    "bpfRedirectToPeer",
    "bpfProfiling",
    "bpfAttachType",
    "bpfConntrackLogLevel",
    "bpfConntrackMode",
    "bpfConntrackTimeouts",
    "bpfExportBufferSizeMB",
    "bpfMapSizePerCPUConntrack",
    "bpfJITHardening",
    "bpfMaglevMaxEndpointsPerService",
    "bpfMaglevMaxServices",
    "bpfKubeProxyHealthzPort",
    "routeSource",
    "routeTableRanges",
    "routeTableRange",
    "routeSyncDisabled",
    "wireguardEnabled",
    "wireguardEnabledV6",
    "wireguardThreadingEnabled",
    "wireguardListeningPort",
    "wireguardListeningPortV6",
    "wireguardRoutingRulePriority",
    "wireguardInterfaceName",
    "wireguardInterfaceNameV6",
    "wireguardMTU",
    "wireguardMTUV6",
    "wireguardHostEncryptionEnabled",
    "wireguardKeepAlive",
    "awsSrcDstCheck",
    "serviceLoopPrevention",
    "workloadSourceSpoofing",
    "mtuIfacePattern",
    "floatingIPs",
    "windowsManageFirewallRules",
    "goGCThreshold",
    "goMemoryLimitMB",
    "goMaxProcs",
    "flowLogsFlushInterval",
    "flowLogsCollectorDebugTrace",
    "flowLogsGoldmaneServer",
    "flowLogsPolicyEvaluationMode",
    "flowLogsLocalReporter",
    "programClusterRoutes",
    "cgroupV2Path",
    "requireMTUFile",
];

/// Ignored fields whose type Calico checks, so that a typo in a value still fails here.
enum IgnoredType {
    Duration,
    Bool,
    LogLevel,
    /// `kubeNodePortRanges`: at most 7 numeric ports or ranges.
    NodePorts,
    Other,
}

fn ignored_type(name: &str) -> IgnoredType {
    match name {
        "dataplaneWatchdogTimeout"
        | "routeRefreshInterval"
        | "interfaceRefreshInterval"
        | "iptablesLockTimeout"
        | "iptablesLockProbeInterval"
        | "ipsetsRefreshInterval"
        | "xdpRefreshInterval"
        | "netlinkTimeout"
        | "reportingInterval"
        | "reportingTTL"
        | "endpointReportingDelay"
        | "usageReportingInitialDelay"
        | "usageReportingInterval"
        | "debugSimulateCalcGraphHangAfter"
        | "debugSimulateDataplaneHangAfter"
        | "debugSimulateDataplaneApplyDelay"
        | "nftablesRefreshInterval"
        | "bpfKubeProxyMinSyncPeriod"
        | "wireguardKeepAlive"
        | "flowLogsFlushInterval" => IgnoredType::Duration,
        "useInternalDataplaneDriver"
        | "ipipEnabled"
        | "vxlanEnabled"
        | "allowVXLANPacketsFromWorkloads"
        | "allowIPIPPacketsFromWorkloads"
        | "endpointReportingEnabled"
        | "prometheusGoMetricsEnabled"
        | "prometheusWireGuardMetricsEnabled"
        | "usageReportingEnabled"
        | "removeExternalRoutes"
        | "debugDisableLogDropping"
        | "sidecarAccelerationEnabled"
        | "xdpEnabled"
        | "genericXDPEnabled"
        | "bpfEnabled"
        | "bpfDisableUnprivileged"
        | "bpfConnectTimeLoadBalancingEnabled"
        | "bpfKubeProxyIptablesCleanupEnabled"
        | "bpfKubeProxyEndpointSlicesEnabled"
        | "bpfHostConntrackBypass"
        | "bpfPolicyDebugEnabled"
        | "routeSyncDisabled"
        | "wireguardEnabled"
        | "wireguardEnabledV6"
        | "wireguardThreadingEnabled"
        | "wireguardHostEncryptionEnabled"
        | "flowLogsCollectorDebugTrace"
        | "requireMTUFile" => IgnoredType::Bool,
        "logSeverityFile" | "logSeveritySys" => IgnoredType::LogLevel,
        "kubeNodePortRanges" => IgnoredType::NodePorts,
        _ => IgnoredType::Other,
    }
}

const FELIX: Schema<'static> = Schema {
    known: &HANDLED,
    exact: &[],
    ignored: IGNORED,
    silent: &[],
};
const FAILSAFE: Schema<'static> = Schema::of(&["protocol", "port", "net"]);

/// Read a FelixConfiguration spec (absent spec = nothing set).
pub(crate) fn felix_spec(
    ctx: &mut Ctx,
    spec: Option<&Node>,
    path: &FieldPath,
) -> Option<FelixSpec> {
    let mut out = FelixSpec::default();
    let Some(spec) = spec else {
        return Some(out);
    };
    let f = fields(ctx, spec, path, &FELIX)?;
    let before = ctx.errors;
    for (key, name, value) in &f.ignored {
        ctx.warn(
            key,
            &path.field(name),
            format!("`{name}` is a Calico setting with no meaning for hostfw; ignored"),
        );
        let p = path.field(name);
        if value.is_null() {
            continue;
        }
        match ignored_type(name) {
            IgnoredType::Duration => {
                duration(ctx, value, &p);
            }
            IgnoredType::Bool => {
                boolean(ctx, value, &p);
            }
            IgnoredType::LogLevel => {
                if let Some(s) = string(ctx, value, &p) {
                    let ok = s.is_empty()
                        || ["Debug", "Info", "Warning", "Error", "Fatal"]
                            .iter()
                            .any(|l| l.eq_ignore_ascii_case(s));
                    if !ok {
                        ctx.error(
                            value,
                            &p,
                            format!("log level `{s}` is invalid: use Debug, Info, Warning, Error or Fatal"),
                        );
                    }
                }
            }
            IgnoredType::NodePorts => {
                if let Some(items) = list(ctx, value, &p) {
                    if items.len() > 7 {
                        ctx.error(value, &p, "kubeNodePortRanges has more than 7 entries");
                    }
                    for (i, item) in items.iter().enumerate() {
                        let ip = p.index(i);
                        if let Some(Port::Named(_)) = rule::port(ctx, item, &ip) {
                            ctx.error(
                                item,
                                &ip,
                                "kubeNodePortRanges takes port numbers or ranges, not names",
                            );
                        }
                    }
                }
            }
            IgnoredType::Other => {}
        }
    }
    out.failsafe_inbound = f
        .get("failsafeInboundHostPorts")
        .and_then(|n| failsafe_list(ctx, n, &path.field("failsafeInboundHostPorts")));
    out.failsafe_outbound = f
        .get("failsafeOutboundHostPorts")
        .and_then(|n| failsafe_list(ctx, n, &path.field("failsafeOutboundHostPorts")));
    out.default_endpoint_to_host_action = f.get("defaultEndpointToHostAction").and_then(|n| {
        exact_enum(
            ctx,
            n,
            &path.field("defaultEndpointToHostAction"),
            &[
                ("Drop", EndpointToHostAction::Drop),
                ("Accept", EndpointToHostAction::Accept),
                ("Return", EndpointToHostAction::Return),
            ],
        )
    });
    out.interface_prefix = f.get("interfacePrefix").and_then(|n| {
        let p = path.field("interfacePrefix");
        let s = string(ctx, n, &p)?;
        let ok = s.split(',').all(|part| {
            (1..=15).contains(&part.len())
                && part
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
        });
        if !ok {
            ctx.error(
                n,
                &p,
                format!(
                    "interfacePrefix `{s}` is invalid: a comma-separated list of 1-15 character \
                     prefixes of letters, digits, `_` and `-`"
                ),
            );
            return None;
        }
        Some(s.to_string())
    });
    out.iptables_mark_mask = f.get("iptablesMarkMask").and_then(|n| {
        let p = path.field("iptablesMarkMask");
        let v = integer(ctx, n, &p, 0, u32::MAX as i128)? as u32;
        if v.count_ones() < MIN_MARK_BITS {
            ctx.error(
                n,
                &p,
                format!(
                    "iptablesMarkMask {v:#x} has {} bits set; at least {MIN_MARK_BITS} are needed \
                     (accept, pass, drop and two scratch bits)",
                    v.count_ones()
                ),
            );
            return None;
        }
        Some(v)
    });
    out.chain_insert_mode = f.get("chainInsertMode").and_then(|n| {
        let p = path.field("chainInsertMode");
        let s = string(ctx, n, &p)?;
        if s.eq_ignore_ascii_case("insert") {
            Some(InsertMode::Insert)
        } else if s.eq_ignore_ascii_case("append") {
            Some(InsertMode::Append)
        } else {
            ctx.error(
                n,
                &p,
                format!("chainInsertMode `{s}` is invalid: use Insert or Append"),
            );
            None
        }
    });
    out.iptables_refresh_interval = f
        .get("iptablesRefreshInterval")
        .and_then(|n| duration(ctx, n, &path.field("iptablesRefreshInterval")));
    out.iptables_post_write_check_interval = f
        .get("iptablesPostWriteCheckInterval")
        .and_then(|n| duration(ctx, n, &path.field("iptablesPostWriteCheckInterval")));
    out.iptables_backend = f.get("iptablesBackend").and_then(|n| {
        exact_enum(
            ctx,
            n,
            &path.field("iptablesBackend"),
            &[
                ("Auto", BackendChoice::Auto),
                ("Legacy", BackendChoice::Legacy),
                ("NFT", BackendChoice::Nft),
            ],
        )
    });
    out.ipv6_support = f
        .get("ipv6Support")
        .and_then(|n| boolean(ctx, n, &path.field("ipv6Support")));
    let allow = [
        ("Accept", AllowAction::Accept),
        ("Return", AllowAction::Return),
    ];
    out.iptables_filter_allow_action = f
        .get("iptablesFilterAllowAction")
        .and_then(|n| exact_enum(ctx, n, &path.field("iptablesFilterAllowAction"), &allow));
    out.iptables_mangle_allow_action = f
        .get("iptablesMangleAllowAction")
        .and_then(|n| exact_enum(ctx, n, &path.field("iptablesMangleAllowAction"), &allow));
    out.iptables_filter_deny_action = f.get("iptablesFilterDenyAction").and_then(|n| {
        exact_enum(
            ctx,
            n,
            &path.field("iptablesFilterDenyAction"),
            &[("Drop", DenyAction::Drop), ("Reject", DenyAction::Reject)],
        )
    });
    out.log_prefix = f.get("logPrefix").and_then(|n| {
        let p = path.field("logPrefix");
        let s = string(ctx, n, &p)?;
        match s.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '%' | ':' | ' ' | '/' | '_' | '-'))
        }) {
            Some(bad) => {
                ctx.error(
                    n,
                    &p,
                    format!("logPrefix contains `{bad}`; allowed are letters, digits and `%: /_-`"),
                );
                None
            }
            None => Some(s.to_string()),
        }
    });
    out.log_action_rate_limit = f
        .get("logActionRateLimit")
        .and_then(|n| rate_limit(ctx, n, &path.field("logActionRateLimit")));
    out.log_action_rate_limit_burst = f
        .get("logActionRateLimitBurst")
        .and_then(|n| integer(ctx, n, &path.field("logActionRateLimitBurst"), 0, 9999))
        .map(|v| v as u32);
    out.disable_conntrack_invalid_check = f
        .get("disableConntrackInvalidCheck")
        .and_then(|n| boolean(ctx, n, &path.field("disableConntrackInvalidCheck")));
    out.max_ipset_size = f
        .get("maxIpsetSize")
        .and_then(|n| integer(ctx, n, &path.field("maxIpsetSize"), 1, i32::MAX as i128))
        .map(|v| v as u32);
    let flag =
        |ctx: &mut Ctx, name: &str| f.get(name).and_then(|n| boolean(ctx, n, &path.field(name)));
    out.prometheus_metrics_enabled = flag(ctx, "prometheusMetricsEnabled");
    out.prometheus_process_metrics_enabled = flag(ctx, "prometheusProcessMetricsEnabled");
    out.health_enabled = flag(ctx, "healthEnabled");
    out.prometheus_metrics_host = f.get("prometheusMetricsHost").and_then(|n| {
        let p = path.field("prometheusMetricsHost");
        let s = string(ctx, n, &p)?;
        // libcalico-go/lib/validator/v3/validator.go, `prometheusHost`.
        let ok = s.is_empty()
            || (s.len() <= 64
                && s.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b":._+-".contains(&c)));
        if !ok {
            ctx.error(
                n,
                &p,
                format!(
                    "prometheusMetricsHost `{s}` is invalid: an address or host name of up to 64 \
                     letters, digits and `:._+-`"
                ),
            );
            return None;
        }
        Some(s.to_string())
    });
    out.health_host = f
        .get("healthHost")
        .and_then(|n| string(ctx, n, &path.field("healthHost")))
        .map(str::to_string);
    let port = |ctx: &mut Ctx, name: &str| {
        f.get(name)
            .and_then(|n| integer(ctx, n, &path.field(name), 0, 65535))
            .map(|v| v as u16)
    };
    out.prometheus_metrics_port = port(ctx, "prometheusMetricsPort");
    out.health_port = port(ctx, "healthPort");
    out.log_severity_screen = f.get("logSeverityScreen").and_then(|n| {
        if n.as_scalar().is_some_and(|s| s.text.is_empty()) {
            return None;
        }
        // Calico's validator (`logLevel`) is case-sensitive here.
        exact_enum(
            ctx,
            n,
            &path.field("logSeverityScreen"),
            &[
                ("Trace", LogSeverity::Trace),
                ("Debug", LogSeverity::Debug),
                ("Info", LogSeverity::Info),
                ("Warning", LogSeverity::Warning),
                ("Error", LogSeverity::Error),
                ("Fatal", LogSeverity::Fatal),
            ],
        )
    });
    if let Some(n) = f.get("iptablesPostWriteCheckIntervalSecs") {
        let p = path.field("iptablesPostWriteCheckIntervalSecs");
        if f.get("iptablesPostWriteCheckInterval").is_some() {
            ctx.error(
                n,
                &p,
                "give either iptablesPostWriteCheckInterval or iptablesPostWriteCheckIntervalSecs, not both",
            );
        } else if let Some(secs) = number(ctx, n, &p) {
            if (0.0..1e9).contains(&secs) {
                ctx.warn(
                    n,
                    &p,
                    format!(
                        "accepted as iptablesPostWriteCheckInterval: {secs}s; Calico's resource \
                         field is `iptablesPostWriteCheckInterval` (a duration such as `1s`)"
                    ),
                );
                out.iptables_post_write_check_interval = Some(Duration::from_secs_f64(secs));
            } else {
                ctx.error(n, &p, "must be a number of seconds, 0 or more");
            }
        }
    }
    (ctx.errors == before).then_some(out)
}

/// A string enum spelled exactly as Calico v3.32.1's Go validator wants it.
fn exact_enum<T: Copy>(
    ctx: &mut Ctx,
    node: &Node,
    path: &FieldPath,
    options: &[(&str, T)],
) -> Option<T> {
    let s = string(ctx, node, path)?;
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == s) {
        return Some(*v);
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    let hint = options
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(name, _)| format!(" (Calico v3.32 is case-sensitive here: write `{name}`)"))
        .unwrap_or_default();
    ctx.error(
        node,
        path,
        format!("`{s}` is invalid: use {}{hint}", names.join(", ")),
    );
    None
}

/// A Kubernetes duration as Calico's CRD pattern allows: `([0-9]+(\.[0-9]+)?(ms|s|m|h))*`.
pub(crate) fn duration(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<Duration> {
    let s = match node.as_scalar() {
        Some(s) if s.plain && s.text.bytes().all(|b| b.is_ascii_digit()) => {
            ctx.error(
                node,
                path,
                format!(
                    "`{}` has no unit; write a duration such as `{}s`",
                    s.text, s.text
                ),
            );
            return None;
        }
        _ => string(ctx, node, path)?,
    };
    match parse_duration(s) {
        Some(d) => Some(d),
        None => {
            ctx.error(
                node,
                path,
                format!("`{s}` is not a valid duration (e.g. `90s`, `1m30s`, `500ms`)"),
            );
            None
        }
    }
}

/// Parse `([0-9]+(\.[0-9]+)?(ms|s|m|h))*`; the empty string is zero.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int_len == 0 {
            return None;
        }
        let mut len = int_len;
        if rest[len..].starts_with('.') {
            let frac = rest[len + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if frac == 0 {
                return None;
            }
            len += 1 + frac;
        }
        let value: f64 = rest[..len].parse().ok()?;
        rest = &rest[len..];
        let (unit, secs) = if rest.starts_with("ms") {
            (2, 0.001)
        } else if rest.starts_with('s') {
            (1, 1.0)
        } else if rest.starts_with('m') {
            (1, 60.0)
        } else if rest.starts_with('h') {
            (1, 3600.0)
        } else {
            return None;
        };
        rest = &rest[unit..];
        total += value * secs;
    }
    (total.is_finite() && total < 1e12).then(|| Duration::from_secs_f64(total))
}

/// `logActionRateLimit`: `N/second|minute|hour|day`, N from 1 to 9999.
fn rate_limit(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<RateLimit> {
    let s = string(ctx, node, path)?;
    let parsed = s.split_once('/').and_then(|(n, unit)| {
        let count = (!n.is_empty()
            && n.len() <= 4
            && !n.starts_with('0')
            && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse::<u32>().ok())
        .flatten()?;
        let per = match unit {
            "second" => RateUnit::Second,
            "minute" => RateUnit::Minute,
            "hour" => RateUnit::Hour,
            "day" => RateUnit::Day,
            _ => return None,
        };
        Some(RateLimit { count, per })
    });
    if parsed.is_none() {
        ctx.error(
            node,
            path,
            format!("`{s}` is not a rate limit: write N/second, N/minute, N/hour or N/day with N from 1 to 9999"),
        );
    }
    parsed
}

/// A failsafe list: omitted (None) means the defaults, `[]` means none.
fn failsafe_list(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<Vec<FailsafePort>> {
    let items = list(ctx, node, path)?;
    let before = ctx.errors;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(p) = failsafe(ctx, item, &path.index(i)) {
            out.push(p);
        }
    }
    (ctx.errors == before).then_some(out)
}

/// One failsafe entry as calicoctl v3.32.1 validates it (`validateProtoPort` in
/// libcalico-go/lib/validator/v3/validator.go): protocol exactly `TCP` or `UDP` (upper case; SCTP,
/// which calicoctl also accepts, is refused because Felix's failsafe parser,
/// felix/config/param_types.go, knows only tcp and udp), port
/// 0-65535, optional net (CIDR or IP, normalised to its network).
fn failsafe(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<FailsafePort> {
    if let Some(s) = node.as_scalar() {
        ctx.error(
            node,
            path,
            format!(
                "`{}`: failsafe entries in a resource are mappings such as {{protocol: TCP, port: 22}} \
                 (the `tcp:22` form is for Felix's environment variables)",
                s.text
            ),
        );
        return None;
    }
    let f = fields(ctx, node, path, &FAILSAFE)?;
    let pp = path.field("protocol");
    let protocol = match f.get("protocol") {
        None => {
            ctx.error(
                node,
                &pp,
                "protocol is required (TCP or UDP); calicoctl rejects an entry without one",
            );
            None
        }
        Some(n) => string(ctx, n, &pp).and_then(|s| match s {
            "TCP" => Some(FailsafeProtocol::Tcp),
            "UDP" => Some(FailsafeProtocol::Udp),
            "SCTP" => {
                ctx.error(
                    n,
                    &pp,
                    "failsafe protocol SCTP is refused: calicoctl accepts it but Felix's failsafe \
                     parser does not, so the entry would never take effect",
                );
                None
            }
            _ if s.eq_ignore_ascii_case("tcp") || s.eq_ignore_ascii_case("udp") => {
                ctx.error(
                    n,
                    &pp,
                    format!(
                        "failsafe protocol `{s}` is invalid: calicoctl requires upper case ({})",
                        s.to_ascii_uppercase()
                    ),
                );
                None
            }
            _ => {
                ctx.error(
                    n,
                    &pp,
                    format!("failsafe protocol `{s}` is invalid: it must be TCP or UDP"),
                );
                None
            }
        }),
    };
    let portp = path.field("port");
    let port = match f.get("port") {
        None => {
            ctx.error(node, &portp, "port is required (0-65535)");
            None
        }
        Some(n) => integer(ctx, n, &portp, 0, 65535).map(|v| v as u16),
    };
    let np = path.field("net");
    let net = match f.get("net") {
        None => Some(None),
        Some(n) => string(ctx, n, &np).and_then(|s| {
            if s.is_empty() {
                return Some(None);
            }
            let net = if s.contains('/') {
                parse_cidr(s).map(|n| n.trunc())
            } else {
                parse_ip(s).map(IpNet::from)
            };
            if net.is_none() {
                ctx.error(n, &np, format!("`{s}` is neither a CIDR nor an IP address"));
                return None;
            }
            Some(net)
        }),
    };
    Some(FailsafePort {
        protocol: protocol?,
        port: port?,
        net: net?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration(""), Some(Duration::ZERO));
        for bad in ["10", "1us", "-1s", "1.s", "s", "1 s", "1d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
