//! `hostfw check`: parse and validate, print every diagnostic; exit 0 valid (warnings allowed),
//! 1 invalid, 2 when a given path (or the datastore) cannot be read at all (missing,
//! permission, symlink loop, etcd unreachable). Without paths it checks the configured source,
//! and adds what only this host can tell: the lockout guard's findings and, when it can read
//! the kernel (root and an iptables backend), the foreign jumps hostfw's inserted hooks would go
//! above (docs/design.md, "Ownership"). Both are warnings: they never change the exit code.

use super::{CmdResult, Exit};
use crate::cli::{CheckArgs, OutputFormat};
use crate::desired::{self, Desired, Families, Options};
use crate::model::PolicySet;
use crate::ruleset::plan::{self, Overtaken};
use crate::settings::Settings;

pub fn run(settings: &Settings, args: &CheckArgs) -> CmdResult {
    let checked = if args.paths.is_empty() {
        crate::policy::load_snapshot(&settings.policy_source()?.read())
    } else {
        crate::source::load_checked(&args.paths)
    };
    let loaded = &checked.loaded;
    // The lockout guard only means something for the set this node would apply.
    if let (Some(set), true) = (&loaded.set, args.paths.is_empty()) {
        if let Some(desired) = this_host(set, &settings.node) {
            for f in desired.guard_findings() {
                eprintln!("warning: lockout guard: {}", f.message);
            }
            // Chain names come from the kernel, where anyone with CAP_NET_ADMIN names them.
            for o in overtaken(settings, &desired) {
                eprintln!("warning: {}", crate::diag::escape(&o.to_string()));
            }
        }
    }
    match args.output {
        OutputFormat::Text => {
            for d in &loaded.diagnostics {
                eprintln!("{d}");
            }
        }
        OutputFormat::Json => {
            let report = serde_json::json!({
                "valid": loaded.set.is_some(),
                "diagnostics": loaded.diagnostics,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if checked.unreadable {
        Exit::Error
    } else if loaded.set.is_some() {
        Exit::Ok
    } else {
        Exit::Invalid
    })
}

/// `set`'s desired state on this host, with the lockout guard run for the admin's sessions as
/// this process sees them. None when the host's interfaces cannot be read or the set cannot be
/// rendered: `check` judges the input, and `apply` reports those.
fn this_host(set: &PolicySet, node: &str) -> Option<Desired> {
    let interfaces = crate::host::interfaces().ok()?;
    let observed = crate::guard::observe(&interfaces, crate::sshd::SocketTables::start());
    let options = Options {
        families: Families::Enabled,
        guard: Some(&observed),
    };
    desired::compute(set, node, &interfaces, options).ok()
}

/// The foreign jumps (fail2ban, CrowdSec, sshguard, admin chains) `desired`'s inserted hooks
/// would go above in the kernel as it is now. Empty when the kernel cannot be read (not root,
/// no iptables tools): a validation command says nothing it cannot know, and needs no root.
fn overtaken(settings: &Settings, desired: &Desired) -> Vec<Overtaken> {
    if !nix::unistd::Uid::effective().is_root() {
        return Vec::new();
    }
    let Ok(dp) = super::apply::open_dataplane(settings, Some(desired.config().iptables_backend))
    else {
        return Vec::new();
    };
    match crate::sync::read_live(&dp) {
        Ok(live) => plan::overtaken_jumps(&desired.rulesets, &live.tables),
        Err(e) => {
            log::debug!("check: kernel not read, no overtaken-jump warnings: {e}");
            Vec::new()
        }
    }
}
