//! `hostfw apply [--dry-run]`: one reconcile of the kernel with the policy directory, then a
//! verifying re-read. Also the plumbing diff and flush share: backend choice, opening the
//! dataplane, rendering both families. Invalid policies stop here, before anything is written.

use super::common;
use super::{CmdResult, Exit};
use crate::cli::ApplyArgs;
use crate::dataplane::{Backend, RealDataplane};
use crate::lock;
use crate::model::BackendChoice;
use crate::resolve::NodeView;
use crate::ruleset::{Family, Ruleset};
use crate::settings::Settings;
use crate::sync::{self, ReconcileReport, SyncOptions};

pub fn run(settings: &Settings, args: &ApplyArgs) -> CmdResult {
    let _lock = lock::acquire_logged(&settings.lock_path())?;
    let (view, desired) = match load_desired(settings) {
        Ok(loaded) => loaded,
        Err(done) => return done,
    };
    if !args.dry_run {
        if let Some(exit) = super::confirm::guard_apply(&view, &desired, args.force)? {
            return Ok(exit);
        }
    }
    let dp = open_dataplane(settings, Some(view.config.iptables_backend))?;
    let pending = match args.confirm.filter(|_| !args.dry_run) {
        Some(secs) => Some(crate::confirm::arm(&dp, &settings.run_dir, secs)?),
        None => None,
    };
    let opts = SyncOptions {
        dry_run: args.dry_run,
        ..SyncOptions::default()
    };
    let report = sync::reconcile(&desired, &dp, &opts).inspect_err(|_| {
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

/// The explicit backend: the command line / environment first, then FelixConfiguration
/// `iptablesBackend`; `None` means detect.
pub(super) fn configured_backend(
    settings: &Settings,
    felix: Option<BackendChoice>,
) -> Option<Backend> {
    match settings.backend.or(felix)? {
        BackendChoice::Auto => None,
        BackendChoice::Legacy => Some(Backend::Legacy),
        BackendChoice::Nft => Some(Backend::Nft),
    }
}

/// Find the tools of the configured or detected backend.
pub(super) fn open_dataplane(
    settings: &Settings,
    felix: Option<BackendChoice>,
) -> Result<RealDataplane, crate::dataplane::DataplaneError> {
    let dp = RealDataplane::detect(configured_backend(settings, felix))?;
    log::debug!(
        "iptables backend: {}",
        crate::dataplane::Dataplane::backend(&dp)
    );
    Ok(dp)
}

/// The node's view (warnings printed) and its desired rulesets, or, as `Err`, the result that
/// ends the command (an invalid or unreadable policy set, a configuration render refuses).
pub(super) fn load_desired(settings: &Settings) -> Result<(NodeView, Vec<Ruleset>), CmdResult> {
    let view = common::load_view(settings).map_err(common::ViewError::into_cmd_result)?;
    let desired = desired_rulesets(&view).map_err(Ok)?;
    Ok((view, desired))
}

/// The desired rulesets: IPv4 always, IPv6 when `ipv6Support` is on. A configuration render
/// cannot honour (e.g. an `iptablesMarkMask` with too few bits) is reported on stderr and the
/// command ends with exit 1 before touching the kernel.
fn desired_rulesets(view: &NodeView) -> Result<Vec<Ruleset>, Exit> {
    let mut families = vec![Family::V4];
    if view.config.ipv6_support {
        families.push(Family::V6);
    }
    families
        .into_iter()
        .map(|family| crate::render::render(view, family))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            eprintln!("error: {e}");
            Exit::Invalid
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn settings(backend: Option<BackendChoice>) -> Settings {
        Settings {
            policy_dir: PathBuf::from("/nonexistent"),
            node: "n".into(),
            backend,
            run_dir: PathBuf::from("/nonexistent"),
            state_dir: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn command_line_backend_beats_felix_configuration() {
        use BackendChoice::*;
        let cases = [
            (None, None, None),
            (None, Some(Auto), None),
            (None, Some(Nft), Some(Backend::Nft)),
            (Some(Legacy), Some(Nft), Some(Backend::Legacy)),
            // An explicit `--backend auto` means detect, whatever FelixConfiguration says.
            (Some(Auto), Some(Legacy), None),
            (Some(Nft), None, Some(Backend::Nft)),
        ];
        for (flag, felix, expected) in cases {
            assert_eq!(
                configured_backend(&settings(flag), felix),
                expected,
                "flag {flag:?}, felix {felix:?}"
            );
        }
    }
}
