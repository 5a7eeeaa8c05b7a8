//! `hostfw apply [--dry-run]`: one reconcile of the kernel with the policy directory, then a
//! verifying re-read. Also the plumbing diff, explain and flush share: opening the dataplane
//! with the configured backend. Invalid policies stop here, before anything is written.

use super::common::{self, Want};
use super::{CmdResult, Exit};
use crate::cli::ApplyArgs;
use crate::dataplane::RealDataplane;
use crate::desired::Families;
use crate::lock;
use crate::model::BackendChoice;
use crate::settings::Settings;
use crate::sync::{self, ReconcileReport, SyncOptions};

pub fn run(settings: &Settings, args: &ApplyArgs) -> CmdResult {
    let _lock = lock::acquire_logged(&settings.lock_path())?;
    let want = Want {
        families: Families::Enabled,
        // The guard protects a real write only; a dry run writes nothing.
        guard: !args.dry_run,
        print_warnings: true,
    };
    let (desired, revision) = match common::load_desired_revision(settings, want) {
        Ok(d) => d,
        Err(done) => return done,
    };
    if let Some(exit) = super::confirm::guard_apply(&desired, args.force) {
        return Ok(exit);
    }
    let dp = open_dataplane(settings, Some(desired.config().iptables_backend))?;
    let pending = match args.confirm.filter(|_| !args.dry_run) {
        Some(secs) => Some(crate::confirm::arm(
            &dp,
            &settings.run_dir,
            secs,
            &revision,
        )?),
        None => None,
    };
    let opts = SyncOptions {
        dry_run: args.dry_run,
        ..SyncOptions::default()
    };
    let report = sync::reconcile(&desired.rulesets, &dp, &opts).inspect_err(|_| {
        if let Some(p) = &pending {
            eprintln!(
                "error: the apply failed; the watcher (pid {}) restores the previous rules in {} s",
                p.watcher_pid.unwrap_or(0),
                p.seconds
            );
        }
    })?;
    if args.dry_run {
        if report.plan.is_empty() {
            println!("in sync (backend {}): nothing to do", report.backend);
        } else {
            print!("{}", report.plan);
        }
    } else {
        println!("{}", summary("applied", &report));
    }
    if !args.dry_run {
        // An explicit apply supersedes an earlier rollback's hold on the daemon.
        crate::confirm::resume_after_edit(&settings.run_dir)?;
    }
    if let Some(p) = pending {
        println!("{}", super::confirm::instructions(&p));
    }
    Ok(Exit::Ok)
}

/// Find the tools of the configured or detected backend.
pub(super) fn open_dataplane(
    settings: &Settings,
    felix: Option<BackendChoice>,
) -> Result<RealDataplane, crate::dataplane::DataplaneError> {
    let dp = RealDataplane::detect(settings.dataplane_backend(felix))?;
    log::debug!(
        "iptables backend: {}",
        crate::dataplane::Dataplane::backend(&dp)
    );
    Ok(dp)
}

/// One line saying what a reconcile wrote.
pub(super) fn summary(verb: &str, report: &ReconcileReport) -> String {
    if report.in_sync() {
        return format!("in sync (backend {}): nothing written", report.backend);
    }
    format!(
        "{verb} (backend {}): {} chain(s) created, {} rewritten, {} deleted, hooks fixed in {} \
         table(s); {} iptables restore(s), {} ipset restore(s), {} attempt(s), {} ms; verified",
        report.backend,
        report.chains_created,
        report.chains_rewritten,
        report.chains_deleted,
        report.hooks_fixed,
        report.restores,
        report.ipset_restores,
        report.attempts,
        report.duration.as_millis()
    )
}
