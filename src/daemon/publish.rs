//! Where the loop's reports go: systemd notifications (READY, RELOADING, STOPPING, STATUS,
//! WATCHDOG) and `status.json`. Behind a trait so loop tests can record them instead. A
//! notification is sent without waiting (`send_notify`): a service manager that stops reading
//! its socket loses messages, it does not stop the firewall's loop.

use crate::status::{self, Status};
use sd_notify::NotifyState;
use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};

/// One message for the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The first apply (or the degraded decision) is done.
    Ready,
    /// A reload began; `Ready` follows when it ends.
    Reloading,
    /// The daemon is exiting.
    Stopping,
    /// A one-line summary for `systemctl status`.
    Status(String),
    /// Still alive.
    Watchdog,
}

/// Sink for notifications and status snapshots.
pub trait Publisher {
    fn notify(&mut self, notices: &[Notice]);
    fn status(&mut self, status: &Status);
}

/// The real sink: `sd_notify` when `NOTIFY_SOCKET` is set, `status.json` in the run directory.
pub struct SystemPublisher {
    status_path: PathBuf,
    warned: bool,
}

impl SystemPublisher {
    pub fn new(status_path: PathBuf) -> SystemPublisher {
        SystemPublisher {
            status_path,
            warned: false,
        }
    }
}

impl Publisher for SystemPublisher {
    fn notify(&mut self, notices: &[Notice]) {
        let mono = NotifyState::monotonic_usec_now().ok();
        let mut states = Vec::with_capacity(notices.len() + 1);
        for n in notices {
            match n {
                Notice::Ready => states.push(NotifyState::Ready),
                Notice::Reloading => {
                    states.push(NotifyState::Reloading);
                    // systemd >= 253 wants the reload's start time beside RELOADING=1.
                    if let Some(m) = &mono {
                        states.push(m.clone());
                    }
                }
                Notice::Stopping => states.push(NotifyState::Stopping),
                Notice::Status(s) => states.push(NotifyState::Status(s)),
                Notice::Watchdog => states.push(NotifyState::Watchdog),
            }
        }
        // Without NOTIFY_SOCKET this is a no-op; a send failure only loses a notification.
        if let Err(e) = send_notify(&states) {
            log::debug!("cannot notify the service manager: {e}");
        }
    }

    fn status(&mut self, status: &Status) {
        match status::write(&self.status_path, status) {
            Ok(()) => self.warned = false,
            Err(e) => {
                // Once per failure streak: the run directory may be full, missing or read-only.
                // systemd's status line says so for as long as it lasts (`systemctl status`),
                // and `hostfw status` notices the stale file against the policy directory.
                if !self.warned {
                    log::error!(
                        "cannot write {}: {e}; it now describes an older state than the one in force",
                        self.status_path.display()
                    );
                    self.warned = true;
                }
                let line = format!("status.json cannot be written ({e}); see the journal");
                let _ = send_notify(&[NotifyState::Status(&line)]);
            }
        }
    }
}

/// Send `states` to the service manager named by `NOTIFY_SOCKET`, if any (`send_to`).
pub fn send_notify(states: &[NotifyState]) -> io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(target) => send_to(&target, states),
        None => Ok(()),
    }
}

/// Send `states` as one datagram to `target`, a socket path or, with a leading `@`, an abstract
/// socket name (sd_notify(3)), without blocking: when the receiver's queue is full the send
/// fails (`WouldBlock`) instead of waiting for the receiver to read.
fn send_to(target: &OsStr, states: &[NotifyState]) -> io::Result<()> {
    let bytes = target.as_bytes();
    let address = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(Path::new(target))?,
    };
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    let sent = socket.send_to_addr(message.as_bytes(), &address)?;
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was cut short",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_receiver_that_never_reads_loses_notifications_without_stopping_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _receiver = UnixDatagram::bind(&path).unwrap();
        let (done, finished) = mpsc::channel();
        let target = path.into_os_string();
        std::thread::spawn(move || {
            // Far more than a datagram socket queues (net.unix.max_dgram_qlen, 10 by default).
            let failed = (0..200)
                .filter(|_| send_to(&target, &[NotifyState::Watchdog]).is_err())
                .count();
            let _ = done.send(failed);
        });
        let failed = finished
            .recv_timeout(Duration::from_secs(60))
            .expect("a send blocked on the full socket");
        assert!(failed > 0, "the receiver's queue never filled");
    }

    #[test]
    fn notifications_reach_a_path_or_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let by_path = UnixDatagram::bind(&path).unwrap();
        let name = format!("hostfw-test-notify-{}", std::process::id());
        let abstract_address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let by_name = UnixDatagram::bind_addr(&abstract_address).unwrap();
        let states = [NotifyState::Ready, NotifyState::Status("ok: generation 1")];
        send_to(path.as_os_str(), &states).unwrap();
        send_to(OsStr::new(&format!("@{name}")), &states).unwrap();
        for socket in [by_path, by_name] {
            let mut buf = [0u8; 256];
            let n = socket.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok: generation 1\n");
        }
    }

    #[test]
    fn no_socket_at_the_path_is_an_error_not_a_wait() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        assert!(send_to(missing.as_os_str(), &[NotifyState::Ready]).is_err());
    }
}
