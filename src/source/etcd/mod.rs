//! The etcd v3 policy source: Calico's datastore layout (`layout`), shared by every host of a
//! fleet and by calicoctl.

pub mod layout;
