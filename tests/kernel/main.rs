//! Real-kernel tests in network namespaces (root; under CI=true they fail when they cannot run):
//! dataplane, scenarios with real packets, daemon, confirm, guard, explain against live counters,
//! and the etcd datastore (a real etcd in a namespace; a fleet of hosts sharing it).

mod confirm;
mod daemon_netns;
mod etcd;
mod etcd_datastore;
mod etcd_fleet;
mod guard;
mod kernel_dataplane;
mod kernel_explain;
mod kernel_lifecycle;
mod kernel_scenarios;
mod netns;
mod ruleset_kernel;
