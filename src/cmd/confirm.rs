//! `hostfw confirm` (keep the rules of a pending `apply --confirm`), the hidden
//! `hostfw confirm-watch` the apply leaves behind (restore the snapshot when the deadline passes
//! unconfirmed), and the two hooks `apply` calls: the lockout guard and the confirmation
//! instructions. Confirm and watcher take the shared lock (bounded wait) before touching the
//! pending state, so a confirm and a rollback do not race.

use super::{CmdResult, Exit};
use crate::cli::ConfirmWatchArgs;
use crate::confirm::{self, WatchEnd};
use crate::dataplane::{Backend, RealDataplane};
use crate::settings::Settings;
use std::time::Duration;

/// How long `confirm` and the watcher wait for the lock before going ahead without it (a
/// running daemon holds it for its whole life but pauses while a confirmation is pending).
const LOCK_WAIT: Duration = Duration::from_secs(5);

pub fn run(settings: &Settings) -> CmdResult {
    let _lock = crate::lock::acquire_within(&settings.lock_path(), LOCK_WAIT);
    let Some(p) = confirm::pending(&settings.run_dir)? else {
        match confirm::daemon_hold(&settings.run_dir, confirm::now_unix()) {
            Some(hold @ confirm::Hold::RolledBack(_)) => {
                eprintln!("error: too late: {hold}")
            }
            _ => eprintln!("error: no apply --confirm is pending: nothing to confirm"),
        }
        return Ok(Exit::Invalid);
    };
    confirm::clear(&settings.run_dir)?;
    println!(
        "confirmed: the rules applied {} s ago stay; the automatic rollback is cancelled",
        confirm::now_unix().saturating_sub(p.created_unix)
    );
    Ok(Exit::Ok)
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
    let Some(snapshot) = confirm::read_snapshot(run_dir)? else {
        log::error!("no snapshot to restore in {}", run_dir.display());
        confirm::clear(run_dir)?;
        return Ok(Exit::Error);
    };
    let backend = match settings.backend {
        Some(crate::model::BackendChoice::Nft) => Backend::Nft,
        _ => Backend::Legacy,
    };
    let dp = RealDataplane::new(backend)?;
    log::warn!(
        "apply --confirm was not confirmed in time: restoring the previous rules ({backend})"
    );
    let result = confirm::restore(&dp, &snapshot);
    confirm::record_rollback(run_dir, &args.token)?;
    confirm::clear(run_dir)?;
    match result {
        Ok(()) => {
            log::warn!("previous rules restored");
            Ok(Exit::Ok)
        }
        Err(e) => {
            log::error!("restoring the previous rules failed: {e}");
            Ok(Exit::Error)
        }
    }
}

/// The lockout guard before an apply: print every finding; `Some(exit)` when the apply must stop:
/// a detected SSH session would be cut off (`Lockout`) and there is no `--force`. A host with no
/// reachable SSH at all but no session to lose (console, cloud-init) gets a loud warning only:
/// refusing there would block hosts deliberately run without SSH.
pub(super) fn guard_apply(
    view: &crate::resolve::NodeView,
    desired: &[crate::ruleset::Ruleset],
    force: bool,
) -> Result<Option<Exit>, super::CmdError> {
    let interfaces = crate::host::interfaces()
        .map_err(|e| format!("cannot read the host's network interfaces: {e}"))?;
    let findings = crate::guard::check_host(view, desired, &interfaces)?;
    for f in &findings {
        eprintln!("lockout guard: {}", f.message);
    }
    // Both kinds refuse (issue 7): cutting off the session applying the rules, and leaving no
    // inbound SSH at all once failsafe ports are gone. `check` and the daemon only warn.
    if findings.is_empty() {
        return Ok(None);
    }
    if force {
        eprintln!("lockout guard: applying anyway (--force)");
        return Ok(None);
    }
    let lockout = findings
        .iter()
        .any(|f| f.severity == crate::guard::Severity::Lockout);
    let what = if lockout {
        "the new rules would cut off the SSH session applying them"
    } else {
        "the new rules would leave no way to reach this host over SSH"
    };
    eprintln!(
        "error: refusing to apply: {what} (see above); fix the policy, or use --force (ideally \
         with --confirm SECS)"
    );
    Ok(Some(Exit::Invalid))
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
