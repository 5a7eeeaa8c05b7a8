//! The only reader of the host's interfaces and their addresses (for HostEndpoint resolution).
//! Reads the calling thread's network namespace; never changes anything.

use crate::resolve::HostInterfaces;
use std::net::IpAddr;

/// Every interface of this network namespace with its local IPv4 and IPv6 addresses, sorted and
/// without duplicates. Interfaces without addresses are included with an empty list.
pub fn interfaces() -> std::io::Result<HostInterfaces> {
    let mut result = HostInterfaces::new();
    // if_nameindex lists every link, addressed or not, in this thread's namespace (unlike
    // /sys/class/net, which shows the namespace sysfs was mounted in).
    for iface in nix::net::if_::if_nameindex()
        .map_err(std::io::Error::from)?
        .iter()
    {
        if let Ok(name) = iface.name().to_str() {
            result.entry(name.to_string()).or_default();
        }
    }
    for entry in nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)? {
        let addrs = result.entry(entry.interface_name.clone()).or_default();
        let Some(addr) = entry.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            addrs.push(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            addrs.push(IpAddr::V6(v6.ip()));
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
    use std::process::Command;

    fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn loopback_is_listed() {
        let ifaces = interfaces().expect("interfaces");
        let lo = ifaces.get("lo").expect("every namespace has lo");
        // lo may be down in a fresh namespace, but then it has no address at all.
        assert!(lo.is_empty() || lo.contains(&IpAddr::from([127, 0, 0, 1])));
    }

    /// In a private network namespace (this thread only; it vanishes with the thread): an
    /// interface without address is listed empty, an addressed one with its addresses.
    #[test]
    fn lists_unaddressed_and_addressed_interfaces_in_a_private_namespace() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "this test needs root (CI=true)"
            );
            eprintln!("SKIPPED: not root: host::tests::lists_unaddressed_and_addressed_interfaces");
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
            // A veth pair: one end addressed, the other left bare.
            ip(&[
                "link", "add", "hfw-addr", "type", "veth", "peer", "name", "hfw-bare",
            ]);
            ip(&["addr", "add", "198.51.100.7/24", "dev", "hfw-addr"]);
            ip(&["addr", "add", "2001:db8::7/64", "dev", "hfw-addr", "nodad"]);
            ip(&["link", "set", "hfw-addr", "up"]);
            let ifaces = interfaces().expect("interfaces");
            assert_eq!(ifaces.get("hfw-bare"), Some(&vec![]), "{ifaces:?}");
            let addrs = &ifaces["hfw-addr"];
            assert!(
                addrs.contains(&"198.51.100.7".parse().unwrap()),
                "{addrs:?}"
            );
            assert!(addrs.contains(&"2001:db8::7".parse().unwrap()), "{addrs:?}");
            // Only this namespace's links: lo and the veth pair.
            let names: Vec<&str> = ifaces.keys().map(String::as_str).collect();
            assert_eq!(names, ["hfw-addr", "hfw-bare", "lo"]);
        })
        .join()
        .expect("namespace thread");
    }
}
