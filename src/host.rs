//! The only reader of the host's interfaces and their addresses (for HostEndpoint resolution).

use crate::resolve::HostInterfaces;

/// Every interface of this network namespace with its local addresses.
pub fn interfaces() -> std::io::Result<HostInterfaces> {
    Ok(HostInterfaces::new())
}
