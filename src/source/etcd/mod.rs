//! The etcd v3 policy source: Calico's datastore layout (`layout`), where to find etcd
//! (`config`), what a push writes (`plan`), the gRPC calls (`client`) and the watch thread
//! feeding the daemon (`watch`).
//! Every host of a fleet, and calicoctl, share one datastore.

pub mod client;
pub mod config;
pub mod layout;
pub mod plan;
pub mod watch;
