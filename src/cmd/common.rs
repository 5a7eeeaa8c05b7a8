//! Plumbing shared by the commands that need this node's resolved view (show, render, diff,
//! apply): load and validate the policy directory, report diagnostics on stderr, read the host's
//! interfaces, resolve. Decides nothing about the kernel.

use super::{CmdError, CmdResult, Exit};
use crate::model::PolicySet;
use crate::resolve::{self, NodeView};
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

/// Load and validate `settings.policy_dir`, printing every diagnostic (errors and warnings) to
/// stderr. `Err(ViewError::Unreadable)` when the directory cannot be read at all,
/// `Err(ViewError::Invalid)` when any error was found.
pub fn load_set(settings: &Settings) -> Result<PolicySet, ViewError> {
    let checked = crate::policy::load_checked(std::slice::from_ref(&settings.policy_dir));
    for d in &checked.loaded.diagnostics {
        eprintln!("{d}");
    }
    if checked.unreadable {
        return Err(ViewError::Unreadable);
    }
    checked.loaded.set.ok_or(ViewError::Invalid)
}

/// This node's resolved view: `load_set`, then the host's interfaces, then `resolve` for
/// `settings.node`. Resolution warnings are printed to stderr as `warning: ...` lines.
pub fn load_view(settings: &Settings) -> Result<NodeView, ViewError> {
    let view = load_view_quiet(settings)?;
    for w in &view.warnings {
        eprintln!("warning: {w}");
    }
    Ok(view)
}

/// As `load_view`, but leaves resolution warnings in the view only (for `show`, which prints
/// them itself). Loader diagnostics are still printed.
pub fn load_view_quiet(settings: &Settings) -> Result<NodeView, ViewError> {
    let set = load_set(settings)?;
    let interfaces = crate::host::interfaces().map_err(|e| {
        ViewError::Host(format!("cannot read the host's network interfaces: {e}").into())
    })?;
    Ok(resolve::resolve_owned(set, &settings.node, &interfaces))
}
