//! Link and address notifications from the kernel (rtnetlink multicast groups). Any message
//! means "interfaces may have changed": the engine re-reads them and decides whether it matters,
//! so nothing here parses netlink messages.

use super::Event;
use nix::sys::socket::{
    bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::Sender;

/// rtnetlink multicast groups (linux/rtnetlink.h): links, IPv4 and IPv6 addresses.
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// A netlink socket subscribed to link and address changes.
fn subscribe() -> io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
    Ok(fd)
}

/// Listen on a thread of its own; one `InterfacesChanged` per datagram (the loop debounces).
pub(crate) fn spawn(tx: Sender<Event>) -> io::Result<()> {
    let fd = subscribe()?;
    std::thread::Builder::new()
        .name("hostfw-netlink".into())
        .spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                    // ENOBUFS: the kernel dropped messages because we were slow; still a change.
                    Ok(_) | Err(nix::errno::Errno::ENOBUFS) => {
                        if tx.send(Event::InterfacesChanged).is_err() {
                            return;
                        }
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => {
                        log::error!(
                            "netlink listener failed: {e}; interface changes now wait for the refresh timer"
                        );
                        return;
                    }
                }
            }
        })?;
    Ok(())
}
