//! `hostfw confirm` (keep the rules of a pending `apply --confirm`), the hidden
//! `hostfw confirm-watch` the apply leaves behind (restore the snapshot when the deadline passes
//! unconfirmed), and the two hooks `apply` calls: the lockout guard and the confirmation
//! instructions. Confirm and watcher take the shared lock (bounded wait) before touching the
//! pending state, so a confirm and a rollback do not race.

use super::{CmdResult, Exit};
use crate::cli::ConfirmWatchArgs;
use crate::confirm::{self, RollBack, WatchEnd};
use crate::dataplane::{Backend, RealDataplane};
use crate::desired::Desired;
use crate::finding::{Finding, FindingKind};
use crate::settings::Settings;
use std::time::Duration;

/// How long `confirm` and the watcher wait for the lock before going ahead without it (a
/// running daemon holds it for its whole life but pauses while a confirmation is pending).
const LOCK_WAIT: Duration = Duration::from_secs(5);

pub fn run(settings: &Settings) -> CmdResult {
    let lock = crate::lock::acquire_within(&settings.lock_path(), LOCK_WAIT);
    let Some(p) = confirm::pending(&settings.run_dir)? else {
        match confirm::daemon_hold(&settings.run_dir, confirm::now_unix()) {
            Some(hold @ confirm::Hold::RolledBack(_)) => {
                eprintln!("error: too late: {hold}")
            }
            _ => eprintln!("error: no apply --confirm is pending: nothing to confirm"),
        }
        return Ok(Exit::Invalid);
    };
    // Hand the confirmed set to a running daemon: it adopts exactly this set even where its
    // lockout guard refused it (a set that would cut off a session it sees; the admin's session
    // has just survived it), instead of enforcing the set it had when the hold ends.
    if let Some(revision) = &p.source_revision {
        confirm::record_confirmed(&settings.run_dir, revision)?;
    }
    confirm::clear(&settings.run_dir)?;
    println!(
        "confirmed: the rules applied {} s ago stay; the automatic rollback is cancelled",
        confirm::now_unix().saturating_sub(p.created_unix)
    );
    if p.source_revision.is_some() {
        // The daemon's reconcile takes the lock.
        drop(lock);
        hand_to_daemon(settings);
    }
    Ok(Exit::Ok)
}

/// How long `confirm` waits for a running daemon to reload the confirmed set.
const HANDOFF_WAIT: Duration = Duration::from_secs(10);

/// Make a running daemon reload (SIGHUP) and wait, bounded, until its status counts the reload:
/// it then holds the confirmed set. Without a daemon there is nothing to do: it reads the
/// confirmation when it starts.
fn hand_to_daemon(settings: &Settings) {
    let status_path = settings.status_path();
    let Ok(before) = crate::status::read(&status_path) else {
        return;
    };
    if !super::status::is_running(before.pid) {
        return;
    }
    let Ok(pid) = i32::try_from(before.pid) else {
        return;
    };
    if let Err(e) = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    ) {
        eprintln!("warning: cannot ask the daemon (pid {pid}) to reload: {e}");
        return;
    }
    let end = std::time::Instant::now() + HANDOFF_WAIT;
    while std::time::Instant::now() < end {
        if crate::status::read(&status_path).is_ok_and(|s| s.reloads > before.reloads) {
            println!("the daemon (pid {pid}) now holds the confirmed policy set");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "warning: the daemon (pid {pid}) did not report its reload within {} s; run `systemctl \
         reload hostfw` so that it enforces the confirmed set",
        HANDOFF_WAIT.as_secs()
    );
}

/// The detached watcher: wait, then (still pending, same token) restore under the lock.
pub fn watch(settings: &Settings, args: &ConfirmWatchArgs) -> CmdResult {
    let run_dir = &settings.run_dir;
    log::info!(
        "confirm watcher {} started for {}",
        std::process::id(),
        args.token
    );
    if confirm::wait(run_dir, &args.token)? == WatchEnd::Stood {
        log::info!("confirmation {} confirmed or superseded", args.token);
        return Ok(Exit::Ok);
    }
    let lock = crate::lock::acquire_within(&settings.lock_path(), LOCK_WAIT);
    if lock.is_none() {
        log::warn!("the hostfw lock is held (a running daemon?): restoring without it");
    }
    // Confirmed while we waited for the lock?
    match confirm::pending(run_dir)? {
        Some(p) if p.token == args.token => {}
        _ => {
            log::info!("confirmation {} confirmed at the deadline", args.token);
            return Ok(Exit::Ok);
        }
    }
    // The backend named on the command line or environment; without one, legacy (the watcher
    // does not detect).
    let backend = settings.dataplane_backend(None).unwrap_or(Backend::Legacy);
    let dp = RealDataplane::new(backend)?;
    log::warn!(
        "apply --confirm was not confirmed in time: restoring the previous rules ({backend})"
    );
    finish_rollback(confirm::roll_back(&dp, run_dir, &args.token), run_dir)
}

/// Report how a rollback ended.
fn finish_rollback(
    result: Result<RollBack, confirm::ConfirmError>,
    run_dir: &std::path::Path,
) -> CmdResult {
    match result {
        Ok(RollBack::Restored) => {
            log::warn!("previous rules restored");
            Ok(Exit::Ok)
        }
        Ok(RollBack::NothingPending) => Ok(Exit::Ok),
        Ok(RollBack::NoSnapshot) => {
            log::error!("no snapshot to restore in {}", run_dir.display());
            Ok(Exit::Error)
        }
        Err(e) => {
            log::error!("restoring the previous rules failed: {e}");
            Ok(Exit::Error)
        }
    }
}

/// Before a command that reads or writes the kernel: a confirmation whose deadline passed
/// without its watcher rolling back (killed with the SSH session's cgroup, kill -9) is rolled
/// back now, so the unconfirmed rules never outlive their deadline by more than the grace
/// period plus the time until the next hostfw command (the daemon does the same on its own).
pub(super) fn catch_up(settings: &Settings) {
    let run_dir = &settings.run_dir;
    let Ok(Some(p)) = confirm::pending(run_dir) else {
        return;
    };
    if !p.abandoned(confirm::now_unix()) {
        return;
    }
    eprintln!(
        "warning: {}; rolling back now",
        confirm::Hold::Abandoned(p.clone())
    );
    let _lock = crate::lock::acquire_within(&settings.lock_path(), LOCK_WAIT);
    // The backend the apply used, as the pending file records it.
    let backend = match p.backend.as_str() {
        "nft" => Backend::Nft,
        "legacy" => Backend::Legacy,
        _ => settings.dataplane_backend(None).unwrap_or(Backend::Legacy),
    };
    match RealDataplane::new(backend) {
        Ok(dp) => {
            let _ = finish_rollback(confirm::roll_back(&dp, run_dir, &p.token), run_dir);
        }
        Err(e) => log::error!("cannot roll back the abandoned confirmation: {e}"),
    }
}

/// The lockout guard before an apply: print every guard finding of `desired` (computed with
/// the admin's sessions, or without any for a dry run); `Some(exit)` when the apply must stop.
/// Both kinds refuse without `--force`: cutting off a detected SSH session (`Lockout`), and
/// leaving no inbound SSH at all once failsafe ports no longer cover it (`Unreachable`), even
/// when no session is there to lose (a console or cloud-init apply): the next login would fail
/// all the same, and `--force` is the deliberate way to run a host without SSH. `check` warns;
/// the daemon warns or refuses by its `--lockout-guard` setting (docs/design.md, "Lockout
/// guard").
pub(super) fn guard_apply(desired: &Desired, force: bool) -> Option<Exit> {
    let findings: Vec<&Finding> = desired.guard_findings().collect();
    for f in &findings {
        eprintln!("lockout guard: {}", f.message);
    }
    if findings.is_empty() {
        return None;
    }
    if force {
        eprintln!("lockout guard: applying anyway (--force)");
        return None;
    }
    let lockout = findings.iter().any(|f| f.kind == FindingKind::Lockout);
    let what = if lockout {
        "the new rules would cut off the SSH session applying them"
    } else {
        "the new rules would leave no way to reach this host over SSH"
    };
    eprintln!(
        "error: refusing to apply: {what} (see above); fix the policy, or use --force (ideally \
         with --confirm SECS)"
    );
    Some(Exit::Invalid)
}

/// What `apply --confirm` prints after applying.
pub(super) fn instructions(p: &confirm::Pending) -> String {
    format!(
        "pending confirmation: run `hostfw confirm` within {} s, or the previous rules are \
         restored automatically (watcher pid {})",
        p.seconds,
        p.watcher_pid
            .map_or_else(|| "?".to_string(), |pid| pid.to_string())
    )
}
