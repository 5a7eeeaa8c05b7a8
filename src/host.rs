//! The only reader of the host's interfaces and their addresses (for HostEndpoint resolution).
//! Reads the current network namespace; never changes anything.

use crate::resolve::HostInterfaces;
use std::net::IpAddr;

/// Where the kernel lists every interface of this network namespace, including those that have
/// no address (getifaddrs may omit them, e.g. links without a hardware address).
const SYS_CLASS_NET: &str = "/sys/class/net";

/// Every interface of this network namespace with its local IPv4 and IPv6 addresses, sorted and
/// without duplicates. Interfaces without addresses are included with an empty list.
pub fn interfaces() -> std::io::Result<HostInterfaces> {
    let mut result = HostInterfaces::new();
    for entry in nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)? {
        let addrs = result.entry(entry.interface_name.clone()).or_default();
        let Some(addr) = entry.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            addrs.push(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            addrs.push(IpAddr::V6(v6.ip()));
        }
    }
    // /sys may be missing in minimal containers; getifaddrs alone is then the best we have.
    if let Ok(dir) = std::fs::read_dir(SYS_CLASS_NET) {
        for entry in dir.flatten() {
            if let Some(name) = entry.file_name().to_str() {
                result.entry(name.to_string()).or_default();
            }
        }
    }
    for addrs in result.values_mut() {
        addrs.sort();
        addrs.dedup();
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed_with_its_address() {
        let ifaces = interfaces().expect("getifaddrs");
        let lo = ifaces.get("lo").expect("every namespace has lo");
        // lo may be down in a fresh namespace, but then it has no address at all.
        assert!(lo.is_empty() || lo.contains(&IpAddr::from([127, 0, 0, 1])));
    }
}
