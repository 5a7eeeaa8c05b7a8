//! Real-kernel tests in network namespaces (root; under CI=true they fail when they cannot run):
//! dataplane, scenarios with real packets, daemon, confirm, guard, explain against live counters,
//! metrics and health scraped by a real Prometheus, native journal logging.

mod confirm;
mod daemon_netns;
mod guard;
mod journal;
mod kernel_dataplane;
mod kernel_explain;
mod kernel_lifecycle;
mod kernel_scenarios;
mod metrics_prometheus;
mod netns;
mod ruleset_kernel;
