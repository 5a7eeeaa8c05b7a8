//! The only module that spawns processes: iptables/ip6tables save and restore, ipset, backend
//! detection, behind the `Dataplane` trait.
