//! `hostfw apply [--dry-run]`: one reconcile of the kernel with the policy directory (read,
//! plan, write, read back the kernel chains it hooked). Also the plumbing diff, explain and
//! flush share: opening the dataplane with the configured backend. Invalid policies stop here,
//! before anything is written.

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
    let early = read_early(settings);
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
    let felix = desired.config().iptables_backend;
    let (dp, mut cache) = match early.join() {
        Ok(Some((dp, live)))
            if settings
                .dataplane_backend(Some(felix))
                .is_none_or(|wanted| wanted == crate::dataplane::Dataplane::backend(&dp)) =>
        {
            (dp, sync::LiveCache::read(live))
        }
        _ => (
            open_dataplane(settings, Some(felix))?,
            sync::LiveCache::default(),
        ),
    };
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
    let report =
        sync::reconcile_cached(&desired.rulesets, &dp, &opts, &mut cache).inspect_err(|_| {
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
    // The command ends here and the process with it: freeing the rendered, planned and read
    // state one allocation at a time took 25 ms of an apply at 1,000 policies, which the exit
    // does at once.
    std::mem::forget((desired, cache, report));
    Ok(Exit::Ok)
}

/// The kernel state, read on a thread while the caller loads, validates and renders the
/// policies (the read depends on none of it; at 1,000 policies each takes a few hundred
/// milliseconds). The dataplane is the one the command line or the detection gives; the caller
/// uses the read only when the policy set's `iptablesBackend` asks for no other. The writer
/// lock is already held, so no other hostfw writes between this read and the plan. `None`
/// when detection or the read fails: the caller then opens the dataplane itself, which reports
/// the error.
fn read_early(settings: &Settings) -> std::thread::JoinHandle<Option<(RealDataplane, sync::Live)>> {
    let configured = settings.dataplane_backend(None);
    std::thread::spawn(move || {
        let dp = RealDataplane::detect(configured).ok()?;
        let live = sync::read_live(&dp).ok()?;
        Some((dp, live))
    })
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
