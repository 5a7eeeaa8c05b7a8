//! hostfw: Calico's host-protection model (HostEndpoint, GlobalNetworkPolicy, GlobalNetworkSet,
//! Profile, Tier, FelixConfiguration) enforced on a standalone Linux host with iptables.
//!
//! Data flow of one reconcile (docs/design.md, "Data flow"): a `source::Source` (the policy
//! directory, or Calico's etcd datastore) reads named texts -> `policy::parse` YAML to raw
//! resources -> `policy::validate` to the typed `model` (all or nothing) -> `desired::compute`,
//! the one spine every command and the daemon share: `resolve` for this node (`NodeView`),
//! `render` once per enabled family (`ruleset::Ruleset`), the lockout `guard` on those rulesets,
//! all findings as `finding::Finding` -> `sync` reads the kernel through `dataplane` (the one
//! place that runs iptables and ipset), plans the minimal change (`ruleset::plan`), writes it, and
//! takes the state it left from the restore input (`ruleset::replay`). `cmd` holds one module
//! per subcommand over `settings`; `daemon` is the only home of
//! signals, inotify/netlink triggers and the event loop, and reports through `status`
//! (status.json), `metrics` (Felix-named Prometheus families, health endpoints) and `logging`
//! (the journal natively, or plain lines on stderr). `confirm` is `apply --confirm`'s snapshot,
//! watcher and rollback (planned by `sync::rollback`); `host` reads interfaces, `sshd` sshd's
//! listening ports, `lock` the run-directory lock, `fsutil` private atomic writes.
//! Pure modules (scanned by tests/offline/purity.rs): desired, finding, model,
//! policy::{parse, validate}, resolve, render, ruleset, explain::sim, daemon::timers,
//! source::etcd::{layout, plan, config}; diag too.

pub mod cli;
pub mod cmd;
pub mod compress;
pub mod confirm;
pub mod daemon;
pub mod dataplane;
pub mod desired;
pub mod diag;
pub mod explain;
pub mod finding;
pub(crate) mod fsutil;
pub mod guard;
pub mod host;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod parallel;
pub mod policy;
pub mod recall;
pub mod render;
pub mod resolve;
pub mod ruleset;
pub mod settings;
pub mod source;
pub mod sshd;
pub mod status;
pub mod sync;
