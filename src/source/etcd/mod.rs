//! The etcd v3 policy source: Calico's datastore layout (`layout`), where to find etcd
//! (`config`), the gRPC calls (`client`) and the watch thread feeding the daemon (`watch`).
//! Every host of a fleet, and calicoctl, share one datastore.

pub mod client;
pub mod config;
pub mod layout;
pub mod watch;
