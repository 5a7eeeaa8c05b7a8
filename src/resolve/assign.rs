//! Interface assignment: which interface each of this node's HostEndpoints governs (by
//! interfaceName, by expectedIPs, or `*`), and the warnings for the ones that lose. Pure.

use super::{EffectiveConfig, HostInterfaces};
use crate::model::*;
use std::collections::BTreeMap;

/// Which interface each of this node's HostEndpoints governs. Returns (interface, HEP) pairs,
/// named interfaces sorted by name, then at most one `Any`.
pub(super) fn assign_interfaces<'a>(
    local: &[&'a HostEndpoint],
    interfaces: &HostInterfaces,
    config: &EffectiveConfig,
    warnings: &mut Vec<String>,
) -> Vec<(InterfaceName, &'a HostEndpoint)> {
    // Interface -> every candidate HEP name; the smallest name wins (Felix's rule).
    let mut candidates: BTreeMap<String, BTreeMap<&'a str, &'a HostEndpoint>> = BTreeMap::new();
    let mut wildcard: BTreeMap<&'a str, &'a HostEndpoint> = BTreeMap::new();
    for &hep in local {
        let name = hep.meta.name.as_str();
        match &hep.interface {
            Some(InterfaceName::Any) => {
                wildcard.insert(name, hep);
            }
            Some(InterfaceName::Named(iface)) => {
                if config.is_workload_interface(iface) {
                    warnings.push(format!(
                        "HostEndpoint {name} names interface {iface}, which matches interfacePrefix \
                         {:?} (a workload interface): ignored",
                        config.interface_prefix
                    ));
                    continue;
                }
                candidates
                    .entry(iface.clone())
                    .or_default()
                    .insert(name, hep);
            }
            None => {
                let (mut matched, mut on_workload) = (false, false);
                for (iface, addrs) in interfaces {
                    if !addrs.iter().any(|a| hep.expected_ips.contains(a)) {
                        continue;
                    }
                    if config.is_workload_interface(iface) {
                        on_workload = true;
                        continue;
                    }
                    matched = true;
                    candidates
                        .entry(iface.clone())
                        .or_default()
                        .insert(name, hep);
                }
                if !matched && on_workload {
                    warnings.push(format!(
                        "HostEndpoint {name} has no interfaceName and its expectedIPs are only on \
                         workload interfaces (interfacePrefix {:?}): it governs nothing here",
                        config.interface_prefix
                    ));
                } else if !matched {
                    warnings.push(format!(
                        "HostEndpoint {name} has no interfaceName and no interface on this host \
                         carries one of its expectedIPs: it governs nothing here"
                    ));
                }
            }
        }
    }
    let mut assigned = Vec::new();
    for (iface, heps) in candidates {
        let mut it = heps.into_values();
        if let Some(winner) = it.next() {
            for loser in it {
                warnings.push(format!(
                    "HostEndpoint {} does not govern {iface}: HostEndpoint {} does (the \
                     smallest name wins)",
                    loser.meta.name, winner.meta.name
                ));
            }
            assigned.push((InterfaceName::Named(iface), winner));
        }
    }
    let mut it = wildcard.into_values();
    if let Some(winner) = it.next() {
        for loser in it {
            warnings.push(format!(
                "HostEndpoint {} is not active: only one \"*\" HostEndpoint is used per node and \
                 {} sorts first",
                loser.meta.name, winner.meta.name
            ));
        }
        assigned.push((InterfaceName::Any, winner));
    }
    assigned
}
