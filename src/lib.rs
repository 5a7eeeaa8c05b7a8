//! hostfw: Calico's host-protection model (HostEndpoint, GlobalNetworkPolicy, GlobalNetworkSet,
//! Profile, Tier, FelixConfiguration) enforced on a standalone Linux host with iptables.
//!
//! Data flow of one reconcile:
//! `policy::source` reads the directory -> `policy::parse` YAML to raw resources ->
//! `policy::validate` to the typed `model` (all or nothing) -> `resolve` for this node
//! (`NodeView`) -> `render` per family (`ruleset::Ruleset`) -> `sync` reads the kernel through
//! `dataplane`, plans the minimal change (`ruleset::plan`), writes it, and verifies.
//! Pure modules: diag, model, policy::{parse, validate, selector}, resolve, render, ruleset.

pub mod cli;
pub mod cmd;
pub mod confirm;
pub mod daemon;
pub mod dataplane;
pub mod diag;
pub mod explain;
pub(crate) mod fsutil;
pub mod guard;
pub mod host;
pub mod lock;
pub mod model;
pub mod policy;
pub mod render;
pub mod resolve;
pub mod ruleset;
pub mod settings;
pub mod source;
pub mod status;
pub mod sync;
