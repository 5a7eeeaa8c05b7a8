//! Where the loop's reports go: systemd notifications (READY, RELOADING, STOPPING, STATUS,
//! WATCHDOG) and `status.json`. Behind a trait so loop tests can record them instead.

use crate::status::{self, Status};
use std::path::PathBuf;

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
        let mono = sd_notify::NotifyState::monotonic_usec_now().ok();
        let mut states = Vec::with_capacity(notices.len() + 1);
        for n in notices {
            match n {
                Notice::Ready => states.push(sd_notify::NotifyState::Ready),
                Notice::Reloading => {
                    states.push(sd_notify::NotifyState::Reloading);
                    // systemd >= 253 wants the reload's start time beside RELOADING=1.
                    if let Some(m) = &mono {
                        states.push(m.clone());
                    }
                }
                Notice::Stopping => states.push(sd_notify::NotifyState::Stopping),
                Notice::Status(s) => states.push(sd_notify::NotifyState::Status(s)),
                Notice::Watchdog => states.push(sd_notify::NotifyState::Watchdog),
            }
        }
        // Without NOTIFY_SOCKET this is a no-op; a send failure only loses a notification.
        if let Err(e) = sd_notify::notify(false, &states) {
            log::debug!("sd_notify failed: {e}");
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
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&line)]);
            }
        }
    }
}
