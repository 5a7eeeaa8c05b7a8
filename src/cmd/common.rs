//! Plumbing shared by the commands that need this node's desired state (show, render, diff,
//! apply, explain): load and validate the policy directory, report diagnostics on stderr, read
//! the host's interfaces (once), and hand all of it to `desired::compute`. Decides nothing
//! about the kernel.

use super::{CmdError, CmdResult, Exit};
use crate::desired::{self, Desired, Families, Options};
use crate::explain::Context;
use crate::finding::{Finding, FindingKind};
use crate::guard::Observed;
use crate::model::PolicySet;
use crate::resolve::HostInterfaces;
use crate::ruleset::{Family, Ruleset};
use crate::settings::Settings;

/// Why no view could be produced; maps onto the documented exit codes.
#[derive(Debug)]
pub enum ViewError {
    /// The policy directory is invalid; its diagnostics were already printed. Exit 1.
    Invalid,
    /// The policy directory could not be read at all (missing, permission, loop); the
    /// diagnostics were already printed. Exit 2, as `check` does.
    Unreadable,
    /// The host could not be read (interfaces) or another I/O failure. Exit 2.
    Host(CmdError),
}

impl ViewError {
    /// The command outcome for this failure: `Ok(Exit::Invalid)` or the error (exit 2).
    pub fn into_cmd_result(self) -> CmdResult {
        match self {
            ViewError::Invalid => Ok(Exit::Invalid),
            ViewError::Unreadable => Ok(Exit::Error),
            ViewError::Host(e) => Err(e),
        }
    }
}

impl std::fmt::Display for ViewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ViewError::Invalid => f.write_str("the policy set is invalid"),
            ViewError::Unreadable => f.write_str("the policy directory cannot be read"),
            ViewError::Host(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ViewError {}

/// Load and validate the policy source (the directory, or etcd), printing every diagnostic
/// (errors and warnings) to stderr. `Err(ViewError::Unreadable)` when the source cannot be read
/// at all, `Err(ViewError::Invalid)` when any error was found. With the set, its revision (the
/// identity the daemon publishes as `source_hash`).
fn load_set(settings: &Settings) -> Result<(PolicySet, String), ViewError> {
    let source = settings
        .policy_source()
        .map_err(|e| ViewError::Host(e.into()))?;
    let snapshot = source.read();
    let checked = crate::policy::load_snapshot(&snapshot);
    for d in &checked.loaded.diagnostics {
        eprintln!("{d}");
    }
    if checked.unreadable {
        return Err(ViewError::Unreadable);
    }
    let set = checked.loaded.set.ok_or(ViewError::Invalid)?;
    Ok((set, snapshot.revision))
}

/// The host's network interfaces, or the error that ends the command (exit 2).
fn host_interfaces() -> Result<HostInterfaces, ViewError> {
    crate::host::interfaces().map_err(|e| {
        ViewError::Host(format!("cannot read the host's network interfaces: {e}").into())
    })
}

/// What a command asks of `load_desired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub families: Families,
    /// Run the lockout guard for the admin's SSH sessions as this process sees them.
    pub guard: bool,
    /// Print resolution warnings to stderr as `warning: ...` lines (`show` prints them itself).
    pub print_warnings: bool,
}

/// This node's desired state: `load_set`, the host's interfaces, `desired::compute` for
/// `settings.node`. A configuration render refuses (e.g. an `iptablesMarkMask` with too few
/// bits) is reported on stderr and ends the command with exit 1 before touching the kernel;
/// as `Err`, the result that ends the command.
pub fn load_desired(settings: &Settings, want: Want) -> Result<Desired, CmdResult> {
    load_desired_revision(settings, want).map(|(desired, _)| desired)
}

/// `load_desired`, with the revision of the policy set it came from.
pub fn load_desired_revision(
    settings: &Settings,
    want: Want,
) -> Result<(Desired, String), CmdResult> {
    // The socket listings the guard reads take a few milliseconds of kernel time: read while
    // the set loads.
    let sockets = want.guard.then(crate::sshd::SocketTables::start);
    let (set, revision) = load_set(settings).map_err(ViewError::into_cmd_result)?;
    let interfaces = host_interfaces().map_err(ViewError::into_cmd_result)?;
    let observed = match sockets {
        Some(tables) => crate::guard::observe(&interfaces, tables),
        None => Observed::default(),
    };
    let options = Options {
        families: want.families,
        guard: want.guard.then_some(&observed),
    };
    let computed = desired::compute_owned(set, &settings.node, &interfaces, options);
    let print = |findings: &[Finding]| {
        if !want.print_warnings {
            return;
        }
        for w in findings.iter().filter(|f| f.kind == FindingKind::Warning) {
            eprintln!("warning: {}", w.message);
        }
    };
    match computed {
        Ok(desired) => {
            print(&desired.findings);
            Ok((desired, revision))
        }
        Err(e) => {
            print(&e.warnings);
            eprintln!("error: {e}");
            Err(Ok(Exit::Invalid))
        }
    }
}

/// This node's desired state with `family` rendered whether or not the configuration enables
/// it (`render --family`, `explain`): the state, that family's ruleset and its explain context.
pub fn load_family(
    settings: &Settings,
    family: Family,
) -> Result<(Desired, Ruleset, Context), CmdResult> {
    let want = Want {
        families: Families::Only(family),
        guard: false,
        print_warnings: true,
    };
    let mut desired = load_desired(settings, want)?;
    match (desired.rulesets.pop(), desired.contexts.pop()) {
        (Some(ruleset), Some(ctx)) => Ok((desired, ruleset, ctx)),
        _ => Err(Err(
            format!("no {} ruleset was rendered", family.label()).into()
        )),
    }
}
