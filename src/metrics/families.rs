//! The catalogue of metric families hostfw exports: name, type, labels and help text, in one
//! place. Felix's families carry Felix's exact name, type, label names and help text, as
//! declared in Calico v3.32.1 (checked against the tagged source):
//!
//! | family                                   | type    | labels            | Felix v3.32.1 source                       |
//! |------------------------------------------|---------|-------------------|--------------------------------------------|
//! | `felix_iptables_restore_calls`           | counter | -                 | felix/iptables/table.go                    |
//! | `felix_iptables_restore_errors`          | counter | -                 | felix/iptables/table.go                    |
//! | `felix_iptables_save_calls`              | counter | -                 | felix/iptables/table.go                    |
//! | `felix_iptables_save_errors`             | counter | -                 | felix/iptables/table.go                    |
//! | `felix_iptables_chains`                  | gauge   | ip_version, table | felix/iptables/table.go                    |
//! | `felix_iptables_rules`                   | gauge   | ip_version, table | felix/iptables/table.go                    |
//! | `felix_iptables_lines_executed`          | counter | ip_version, table | felix/iptables/table.go (every restore line, `*table` and `COMMIT` included: restore_buffer.go) |
//! | `felix_ipset_calls`                      | counter | -                 | felix/ipsets/ipset_defs.go                 |
//! | `felix_ipset_errors`                     | counter | -                 | felix/ipsets/ipset_defs.go                 |
//! | `felix_ipsets_calico`                    | gauge   | ip_version        | felix/ipsets/ipset_defs.go                 |
//! | `felix_ipsets_total`                     | gauge   | -                 | felix/ipsets/ipset_defs.go                 |
//! | `felix_int_dataplane_apply_time_seconds` | summary | quantile          | felix/dataplane/linux/int_dataplane.go (objectives 0.5/0.9/0.99: libcalico-go/lib/prometheus/summary.go) |
//! | `felix_int_dataplane_failures`           | counter | -                 | felix/dataplane/linux/int_dataplane.go     |
//! | `felix_resyncs_started`                  | counter | -                 | felix/calc/async_calc_graph.go (its help text really is "Current datastore state.") |
//! | `felix_active_local_endpoints`           | gauge   | -                 | felix/calc/policy_resolver.go              |
//! | `felix_active_local_policies`            | gauge   | -                 | felix/calc/policy_resolver.go              |
//! | `felix_active_local_selectors`           | gauge   | -                 | felix/calc/calc_graph.go                   |
//! | `felix_cluster_num_host_endpoints`       | gauge   | -                 | felix/calc/stats_collector.go              |
//! | `felix_cluster_num_tiers`                | gauge   | -                 | felix/calc/stats_collector.go              |
//! | `felix_cluster_num_policies`             | gauge   | -                 | felix/calc/stats_collector.go              |
//! | `felix_cluster_num_profiles`             | gauge   | -                 | felix/calc/stats_collector.go              |
//!
//! Felix v3.32.1 has no per-node tier gauge (there is no `felix_active_local_tiers` in its
//! source), so that one is hostfw's own: `hostfw_active_local_tiers`. Everything else hostfw
//! adds is prefixed `hostfw_`. The `process_*` families are in `process.rs`.

use super::exposition::Kind;

/// One family's fixed description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn def(name: &'static str, kind: Kind, help: &'static str) -> Def {
    Def { name, kind, help }
}

pub const RESTORE_CALLS: Def = def(
    "felix_iptables_restore_calls",
    Kind::Counter,
    "Number of iptables-restore calls.",
);
pub const RESTORE_ERRORS: Def = def(
    "felix_iptables_restore_errors",
    Kind::Counter,
    "Number of iptables-restore errors.",
);
pub const SAVE_CALLS: Def = def(
    "felix_iptables_save_calls",
    Kind::Counter,
    "Number of iptables-save calls.",
);
pub const SAVE_ERRORS: Def = def(
    "felix_iptables_save_errors",
    Kind::Counter,
    "Number of iptables-save errors.",
);
pub const CHAINS: Def = def(
    "felix_iptables_chains",
    Kind::Gauge,
    "Number of active iptables chains.",
);
pub const RULES: Def = def(
    "felix_iptables_rules",
    Kind::Gauge,
    "Number of active iptables rules.",
);
pub const LINES_EXECUTED: Def = def(
    "felix_iptables_lines_executed",
    Kind::Counter,
    "Number of iptables rule updates executed.",
);
pub const IPSET_CALLS: Def = def(
    "felix_ipset_calls",
    Kind::Counter,
    "Number of ipset commands executed.",
);
pub const IPSET_ERRORS: Def = def(
    "felix_ipset_errors",
    Kind::Counter,
    "Number of ipset command failures.",
);
pub const IPSETS_CALICO: Def = def(
    "felix_ipsets_calico",
    Kind::Gauge,
    "Number of active Calico IP sets.",
);
pub const IPSETS_TOTAL: Def = def(
    "felix_ipsets_total",
    Kind::Gauge,
    "Total number of active IP sets.",
);
pub const APPLY_TIME: Def = def(
    "felix_int_dataplane_apply_time_seconds",
    Kind::Summary,
    "Time in seconds for each incremental update to the dataplane (after the initial resync).",
);
pub const DATAPLANE_FAILURES: Def = def(
    "felix_int_dataplane_failures",
    Kind::Counter,
    "Number of times dataplane updates failed and will be retried.",
);
pub const RESYNCS_STARTED: Def = def(
    "felix_resyncs_started",
    Kind::Counter,
    "Current datastore state.",
);
pub const ACTIVE_ENDPOINTS: Def = def(
    "felix_active_local_endpoints",
    Kind::Gauge,
    "Number of active endpoints on this host.",
);
pub const ACTIVE_POLICIES: Def = def(
    "felix_active_local_policies",
    Kind::Gauge,
    "Number of active policies on this host.",
);
pub const ACTIVE_SELECTORS: Def = def(
    "felix_active_local_selectors",
    Kind::Gauge,
    "Number of active selectors on this host.",
);
pub const CLUSTER_HOST_ENDPOINTS: Def = def(
    "felix_cluster_num_host_endpoints",
    Kind::Gauge,
    "Total number of host endpoints cluster-wide.",
);
pub const CLUSTER_TIERS: Def = def(
    "felix_cluster_num_tiers",
    Kind::Gauge,
    "Total number of tiers cluster-wide.",
);
pub const CLUSTER_POLICIES: Def = def(
    "felix_cluster_num_policies",
    Kind::Gauge,
    "Total number of policies cluster-wide.",
);
pub const CLUSTER_PROFILES: Def = def(
    "felix_cluster_num_profiles",
    Kind::Gauge,
    "Total number of profiles cluster-wide.",
);

pub const ACTIVE_TIERS: Def = def(
    "hostfw_active_local_tiers",
    Kind::Gauge,
    "Number of tiers with at least one policy active on this host.",
);
pub const POLICY_PACKETS: Def = def(
    "hostfw_policy_packets",
    Kind::Counter,
    "Packets a policy's rules acted on, by verdict kind (kernel counters; they restart when a chain is rewritten).",
);
pub const POLICY_BYTES: Def = def(
    "hostfw_policy_bytes",
    Kind::Counter,
    "Bytes a policy's rules acted on, by verdict kind (kernel counters; they restart when a chain is rewritten).",
);
pub const DRIFT_REPAIRS: Def = def(
    "hostfw_drift_repairs",
    Kind::Counter,
    "Number of times hostfw rewrote a table because someone else changed its rules.",
);
pub const POLICY_GENERATION: Def = def(
    "hostfw_policy_generation",
    Kind::Gauge,
    "Generation of the newest valid policy set (counts the distinct sets since start; 0 = none yet).",
);
pub const POLICY_INFO: Def = def(
    "hostfw_policy_info",
    Kind::Gauge,
    "Always 1; the labels name the policy set in force (generation and sha256 of its files).",
);
pub const CONFIG_VALID: Def = def(
    "hostfw_config_valid",
    Kind::Gauge,
    "1 if the policy directory's last load was valid, 0 if it was invalid (the last good rules stay).",
);
pub const CONFIG_DIAGNOSTICS: Def = def(
    "hostfw_config_diagnostics",
    Kind::Gauge,
    "Diagnostics of the policy directory's last load, by severity.",
);
pub const LAST_APPLY: Def = def(
    "hostfw_last_successful_apply_timestamp_seconds",
    Kind::Gauge,
    "Unix time of the last reconcile that left the kernel matching the policy set (0 = never).",
);
pub const CONFIRM_PENDING: Def = def(
    "hostfw_confirm_pending",
    Kind::Gauge,
    "1 while an `apply --confirm` waits for confirmation (the daemon does not reconcile).",
);
pub const GUARD_FINDINGS: Def = def(
    "hostfw_lockout_guard_findings",
    Kind::Gauge,
    "Findings of the lockout guard's last check, by severity.",
);
pub const IN_SYNC: Def = def(
    "hostfw_in_sync",
    Kind::Gauge,
    "1 when the rules in the kernel match the newest valid policy set (what /readiness reports).",
);
