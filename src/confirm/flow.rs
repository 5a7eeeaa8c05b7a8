//! The confirmation flow: arm (snapshot, pending file, detached watcher), the watcher's wait for
//! confirmation or deadline, and the restore through the dataplane with bounded retries.

use super::state::{
    boottime_ms, clear, log_path, now_unix, pending, read_snapshot, record_rollback, write_pending,
    write_snapshot,
};
use super::{ConfirmError, Pending, Snapshot};
use crate::dataplane::{Backend, Dataplane};
use crate::sync;
use crate::sync::rollback::{rollback_plan, saved_table};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Read hostfw's current state through the dataplane.
pub(super) fn snapshot(dp: &dyn Dataplane) -> Result<Snapshot, ConfirmError> {
    let live = sync::read_live(dp).map_err(ConfirmError::Read)?;
    let mut tables = Vec::new();
    for state in &live.tables {
        for (table, lt) in &state.tables {
            tables.push(saved_table(state.family, *table, lt));
        }
    }
    let ipsets = dp.ipset_save().map_err(ConfirmError::Save)?;
    Ok(Snapshot { tables, ipsets })
}

/// Passes a rollback makes before giving up: a failed write (lock held, a concurrent change
/// making a delete-by-value miss) is retried after re-reading the kernel.
const ROLLBACK_ATTEMPTS: u32 = 3;

/// Put the snapshot back without ever leaving the host more open than before or after: each
/// table changes in one transaction (see `rollback_plan`), sets are ready before any rule uses
/// them and destroyed only after none does.
pub fn restore(dp: &dyn Dataplane, snap: &Snapshot) -> Result<(), ConfirmError> {
    let mut attempt = 1;
    loop {
        match restore_once(dp, snap) {
            Err(ConfirmError::Restore(e)) if e.is_retryable() && attempt < ROLLBACK_ATTEMPTS => {
                log::warn!("rollback attempt {attempt} failed, re-reading and retrying: {e}");
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn restore_once(dp: &dyn Dataplane, snap: &Snapshot) -> Result<(), ConfirmError> {
    let live = sync::read_live(dp).map_err(ConfirmError::Read)?;
    let plan = rollback_plan(snap, &live, dp.backend() == Backend::Nft)
        .map_err(ConfirmError::SnapshotIpsets)?;
    if !plan.ipsets_before.is_empty() {
        dp.ipset_restore(&plan.ipsets_before)
            .map_err(ConfirmError::Restore)?;
    }
    for (family, table, input) in &plan.tables {
        dp.restore(*family, *table, input)
            .map_err(ConfirmError::Restore)?;
    }
    if !plan.ipsets_after.is_empty() {
        dp.ipset_restore(&plan.ipsets_after)
            .map_err(ConfirmError::Restore)?;
    }
    Ok(())
}

/// A token unique enough to tell one pending confirmation from the next.
fn new_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// Arm a confirmation before an apply: snapshot the current state (an already pending
/// confirmation keeps its older snapshot: rolling back goes to the last confirmed state), write
/// the pending file, start the detached watcher. The caller holds the lock and applies next.
pub fn arm(
    dp: &dyn Dataplane,
    run_dir: &Path,
    seconds: u64,
    source_revision: &str,
) -> Result<Pending, ConfirmError> {
    let keep_old = pending(run_dir)?.is_some() && read_snapshot(run_dir)?.is_some();
    if !keep_old {
        write_snapshot(run_dir, &snapshot(dp)?)?;
    }
    let now = now_unix();
    let mut p = Pending {
        token: new_token(),
        created_unix: now,
        deadline_unix: now + seconds,
        seconds,
        backend: dp.backend().as_str().to_string(),
        watcher_pid: None,
        deadline_boot_ms: Some(boottime_ms() + seconds * 1000),
        source_revision: Some(source_revision.to_string()),
    };
    // The watcher reads the pending file to learn its deadline: write it first.
    write_pending(run_dir, &p)?;
    let pid = spawn_watcher(run_dir, &p)?;
    p.watcher_pid = Some(pid);
    write_pending(run_dir, &p)?;
    Ok(p)
}

/// Start `hostfw confirm-watch` in its own session (setsid: no controlling terminal, so the
/// SSH session ending sends it no SIGHUP), its output going to `confirm.log`. Nobody waits for
/// it: when this process exits it is re-parented to init.
fn spawn_watcher(run_dir: &Path, p: &Pending) -> Result<u32, ConfirmError> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(ConfirmError::Spawn)?;
    let log = crate::fsutil::private_options()
        .create(true)
        .append(true)
        .open(log_path(run_dir))
        .map_err(|source| ConfirmError::File {
            path: log_path(run_dir),
            source,
        })?;
    let log2 = log.try_clone().map_err(ConfirmError::Spawn)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--run-dir")
        .arg(run_dir)
        .args([
            "--backend",
            &p.backend,
            "confirm-watch",
            "--token",
            &p.token,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(ConfirmError::Spawn)?;
    Ok(child.id())
}

/// What the watcher found when it woke up for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// Confirmed (or superseded by a newer confirmation): nothing to do.
    Stood,
    /// The deadline passed: restore.
    Expired,
}

/// Wait until the pending confirmation `token` is confirmed/superseded or its deadline passes.
pub fn wait(run_dir: &Path, token: &str) -> Result<WatchEnd, ConfirmError> {
    loop {
        let Some(p) = pending(run_dir)? else {
            return Ok(WatchEnd::Stood);
        };
        if p.token != token {
            return Ok(WatchEnd::Stood);
        }
        if p.expired(now_unix()) {
            return Ok(WatchEnd::Expired);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How a rollback of a pending confirmation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollBack {
    /// The previous rules are back.
    Restored,
    /// Nothing was pending with that token any more (confirmed, or someone else rolled back).
    NothingPending,
    /// No snapshot to restore: the pending state was cleared.
    NoSnapshot,
}

/// Restore the snapshot of the pending confirmation `token` (the caller holds the lock, or gave
/// up waiting for it), record the rollback for the daemon, clear the pending files. Used by the
/// watcher at the deadline, and by the daemon or the next command when the watcher died.
pub fn roll_back(
    dp: &dyn Dataplane,
    run_dir: &Path,
    token: &str,
) -> Result<RollBack, ConfirmError> {
    match pending(run_dir)? {
        Some(p) if p.token == token => {}
        _ => return Ok(RollBack::NothingPending),
    }
    let Some(snapshot) = read_snapshot(run_dir)? else {
        clear(run_dir)?;
        return Ok(RollBack::NoSnapshot);
    };
    let result = restore(dp, &snapshot);
    record_rollback(run_dir, token)?;
    clear(run_dir)?;
    result.map(|()| RollBack::Restored)
}
