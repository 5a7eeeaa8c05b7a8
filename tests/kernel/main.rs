//! Real-kernel tests in network namespaces (root; under CI=true they fail when they cannot run):
//! dataplane, scenarios with real packets, daemon, the daemon's render memo across endpoint
//! edits, confirm, guard, explain against live counters, the demo script, the shipped examples
//! with cold IPv6 neighbour caches, the unit's reload script, metrics and health scraped by a
//! real Prometheus, native journal logging, and the etcd datastore (a real etcd in a namespace;
//! a fleet of hosts sharing it).

mod attacks_confirm;
mod attacks_dataplane;
mod attacks_local_users;
mod attacks_lockout;
mod attacks_policy;
mod confirm;
mod daemon_memo;
mod daemon_netns;
mod demo_script;
mod etcd;
mod etcd_datastore;
mod etcd_fleet;
mod examples_nd;
mod felix_fidelity;
mod felix_takeover;
mod guard;
mod journal;
mod kernel_dataplane;
mod kernel_explain;
mod kernel_lifecycle;
mod kernel_scenarios;
mod metrics_prometheus;
mod netns;
mod reload_script;
mod ruleset_kernel;
