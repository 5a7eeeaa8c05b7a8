//! The confirmation's files in the run directory (see the list in `confirm`): the pending
//! confirmation, the rollback record, the snapshot, the watcher's log; and what the daemon and
//! `status` conclude from them.

use super::{ConfirmError, Snapshot};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A confirmation is pending (read by the daemon and `status`).
pub const PENDING_FILE: &str = "confirm-pending.json";
/// The state a rollback restores.
pub const SNAPSHOT_FILE: &str = "confirm-snapshot.json";
/// The watcher's log.
pub const LOG_FILE: &str = "confirm.log";
/// A rollback happened; the daemon holds off until the policies change.
pub const ROLLED_BACK_FILE: &str = "confirm-rolled-back.json";
/// The policy set `hostfw confirm` kept: the daemon adopts that exact set even where its lockout
/// guard refused it (the admin's session demonstrably survived it).
pub const CONFIRMED_FILE: &str = "confirm-confirmed.json";

/// After the deadline the watcher restores within moments; if it has not done so this long
/// after the deadline it is taken to be dead (kill -9, or killed with the SSH session's
/// cgroup), and the daemon or the next hostfw command performs the rollback instead.
pub const PENDING_GRACE_SECS: u64 = 5;

/// A pending confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub token: String,
    pub created_unix: u64,
    pub deadline_unix: u64,
    pub seconds: u64,
    pub backend: String,
    pub watcher_pid: Option<u32>,
    /// The deadline on CLOCK_BOOTTIME in milliseconds: wall-clock steps (NTP, an admin's
    /// `date -s`) neither hasten nor postpone the rollback. Absent in files written before it
    /// existed; `deadline_unix` then decides.
    #[serde(default)]
    pub deadline_boot_ms: Option<u64>,
    /// The revision (`status.json` `source_hash`) of the policy set the apply enforced, so
    /// that `hostfw confirm` can hand exactly that set to a running daemon.
    #[serde(default)]
    pub source_revision: Option<String>,
}

/// What `hostfw confirm` kept (`CONFIRMED_FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmed {
    pub source_revision: String,
    pub confirmed_unix: u64,
}

impl Pending {
    /// Seconds past the deadline (0 before it, and at it).
    pub fn overdue_secs(&self, now_unix: u64) -> u64 {
        match self.deadline_boot_ms {
            Some(deadline) => boottime_ms().saturating_sub(deadline) / 1000,
            None => now_unix.saturating_sub(self.deadline_unix),
        }
    }

    /// True once the deadline has passed.
    pub fn expired(&self, now_unix: u64) -> bool {
        match self.deadline_boot_ms {
            Some(deadline) => boottime_ms() >= deadline,
            None => now_unix >= self.deadline_unix,
        }
    }

    /// Seconds left before the deadline.
    pub fn remaining_secs(&self, now_unix: u64) -> u64 {
        match self.deadline_boot_ms {
            Some(deadline) => deadline.saturating_sub(boottime_ms()).div_ceil(1000),
            None => self.deadline_unix.saturating_sub(now_unix),
        }
    }

    /// True when the watcher should have rolled back by now and has not: someone else must.
    pub fn abandoned(&self, now_unix: u64) -> bool {
        self.expired(now_unix) && self.overdue_secs(now_unix) >= PENDING_GRACE_SECS
    }

    /// Whether the watcher process is still there (`kill(pid, 0)`).
    pub fn watcher_alive(&self) -> bool {
        self.watcher_pid.is_some_and(|pid| {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            nix::sys::signal::kill(pid, None).is_ok()
        })
    }
}

/// Milliseconds on CLOCK_BOOTTIME (monotonic, counts suspend, never stepped).
pub fn boottime_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// The record of a rollback the daemon must respect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    pub token: String,
    pub rolled_back_unix: u64,
}

/// Why the daemon must not reconcile now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// An `apply --confirm` waits for `hostfw confirm`.
    Pending(Pending),
    /// Its deadline passed and its watcher did not roll back: the caller must
    /// (`roll_back_abandoned`).
    Abandoned(Pending),
    /// An unconfirmed apply was rolled back; wait for the policy directory to change.
    RolledBack(RolledBack),
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::Pending(p) => write!(
                f,
                "apply --confirm pending: run `hostfw confirm` before {} (unix time) or the \
                 previous rules are restored; reconciliation paused",
                p.deadline_unix
            ),
            Hold::Abandoned(p) => write!(
                f,
                "apply --confirm was not confirmed and its deadline passed {} s ago, but its \
                 watcher (pid {}) did not roll back: the previous rules must be restored now",
                p.overdue_secs(now_unix()),
                p.watcher_pid
                    .map_or_else(|| "?".to_string(), |pid| pid.to_string())
            ),
            Hold::RolledBack(r) => write!(
                f,
                "an unconfirmed apply was rolled back at {} (unix time); reconciliation paused \
                 until the policy directory changes or hostfw is reloaded",
                r.rolled_back_unix
            ),
        }
    }
}

/// What the daemon must respect right now (`None`: reconcile as usual). A pending file whose
/// deadline and grace have passed (its watcher died) is `Abandoned`: the rollback is still
/// owed, never skipped.
pub fn daemon_hold(run_dir: &Path, now_unix: u64) -> Option<Hold> {
    if let Ok(Some(p)) = pending(run_dir) {
        if p.abandoned(now_unix) {
            return Some(Hold::Abandoned(p));
        }
        return Some(Hold::Pending(p));
    }
    match read_json::<RolledBack>(&run_dir.join(ROLLED_BACK_FILE)) {
        Ok(Some(r)) => Some(Hold::RolledBack(r)),
        _ => None,
    }
}

/// The policy directory changed (or SIGHUP): a rollback no longer holds the daemon.
pub fn resume_after_edit(run_dir: &Path) -> Result<(), ConfirmError> {
    let path = run_dir.join(ROLLED_BACK_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ConfirmError::File { path, source }),
    }
}

/// One line for `hostfw status` (None when nothing is pending or held).
pub fn status_line(run_dir: &Path, now_unix: u64) -> Option<String> {
    match daemon_hold(run_dir, now_unix)? {
        Hold::Pending(p) if !p.watcher_alive() => Some(format!(
            "confirmation pending, but its watcher (pid {}) is not running: the daemon or the \
             next hostfw command rolls back {}",
            p.watcher_pid
                .map_or_else(|| "?".to_string(), |pid| pid.to_string()),
            if p.expired(now_unix) {
                "now (the deadline has passed)".to_string()
            } else {
                format!(
                    "in {} s unless `hostfw confirm` runs",
                    p.remaining_secs(now_unix)
                )
            }
        )),
        Hold::Pending(p) => Some(format!(
            "confirmation pending: rollback in {} s unless `hostfw confirm` runs (watcher pid {})",
            p.remaining_secs(now_unix),
            p.watcher_pid
                .map_or_else(|| "?".to_string(), |pid| pid.to_string())
        )),
        h @ (Hold::Abandoned(_) | Hold::RolledBack(_)) => Some(h.to_string()),
    }
}

/// Record a rollback for the daemon (see `ROLLED_BACK_FILE`).
pub fn record_rollback(run_dir: &Path, token: &str) -> Result<(), ConfirmError> {
    write_json(
        &run_dir.join(ROLLED_BACK_FILE),
        &RolledBack {
            token: token.to_string(),
            rolled_back_unix: now_unix(),
        },
    )
}

/// Record that the set of `source_revision` was confirmed (see `CONFIRMED_FILE`).
pub fn record_confirmed(run_dir: &Path, source_revision: &str) -> Result<(), ConfirmError> {
    write_json(
        &run_dir.join(CONFIRMED_FILE),
        &Confirmed {
            source_revision: source_revision.to_string(),
            confirmed_unix: now_unix(),
        },
    )
}

/// Whether `hostfw confirm` kept the set of `source_revision` (what the daemon asks before its
/// lockout guard refuses a set).
pub fn was_confirmed(run_dir: &Path, source_revision: &str) -> bool {
    matches!(
        read_json::<Confirmed>(&run_dir.join(CONFIRMED_FILE)),
        Ok(Some(c)) if c.source_revision == source_revision
    )
}

/// Where the pending confirmation lives in `run_dir`.
fn pending_path(run_dir: &Path) -> PathBuf {
    run_dir.join(PENDING_FILE)
}

/// Where the snapshot lives in `run_dir`.
fn snapshot_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SNAPSHOT_FILE)
}

/// Where the watcher logs in `run_dir`.
pub(super) fn log_path(run_dir: &Path) -> PathBuf {
    run_dir.join(LOG_FILE)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, ConfirmError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| ConfirmError::Corrupt {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfirmError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write atomically (`fsutil::write_atomic`) so readers never see half a file.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ConfirmError> {
    let file_err = |source| ConfirmError::File {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(file_err)?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| file_err(io::Error::other(e)))?;
    crate::fsutil::write_atomic(path, text.as_bytes()).map_err(file_err)
}

/// The pending confirmation, if any (what the daemon and `status` call).
pub fn pending(run_dir: &Path) -> Result<Option<Pending>, ConfirmError> {
    read_json(&pending_path(run_dir))
}

/// Record a pending confirmation (atomically).
pub fn write_pending(run_dir: &Path, p: &Pending) -> Result<(), ConfirmError> {
    write_json(&pending_path(run_dir), p)
}

/// The saved snapshot, if any.
pub fn read_snapshot(run_dir: &Path) -> Result<Option<Snapshot>, ConfirmError> {
    read_json(&snapshot_path(run_dir))
}

/// Save the snapshot (atomically).
pub(super) fn write_snapshot(run_dir: &Path, s: &Snapshot) -> Result<(), ConfirmError> {
    write_json(&snapshot_path(run_dir), s)
}

/// Remove the pending file and the snapshot (confirmed, or rolled back).
pub fn clear(run_dir: &Path) -> Result<(), ConfirmError> {
    for path in [pending_path(run_dir), snapshot_path(run_dir)] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ConfirmError::File { path, source }),
        }
    }
    Ok(())
}

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}
