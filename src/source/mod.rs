//! Policy sources.

pub mod etcd;
