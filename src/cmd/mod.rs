//! One file per subcommand; each returns the exit status or an error for `main` to print.

pub mod apply;
pub mod check;
pub mod common;
pub mod confirm;
pub mod datastore;
pub mod diff;
pub mod explain;
pub mod flush;
pub mod render;
pub mod run;
pub mod show;
pub mod status;

use crate::cli::{Cli, Command};
use crate::settings::Settings;

/// How a command ended, mapped to the documented exit codes by `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success (in sync, valid).
    Ok,
    /// 1: the input is invalid, or (diff) changes are pending.
    Invalid,
    /// 2: an error (missing binary, no permission, kernel refused).
    Error,
    /// 4: `hostfw run` lacks CAP_NET_ADMIN (the LSB's "insufficient privilege"); the unit does
    /// not restart on it.
    NoPrivilege,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Invalid => 1,
            Exit::Error => 2,
            Exit::NoPrivilege => 4,
        }
    }
}

/// Errors a command returns; printed by `main` and mapped to exit 2.
pub type CmdError = Box<dyn std::error::Error + Send + Sync>;
pub type CmdResult = Result<Exit, CmdError>;

/// Dispatch one parsed command line.
pub fn run(cli: Cli) -> CmdResult {
    let settings = Settings::from_args(&cli.global);
    // A rollback owed by a dead confirmation watcher comes first.
    if matches!(
        cli.command,
        Command::Diff(_) | Command::Apply(_) | Command::Confirm | Command::Run
    ) {
        confirm::catch_up(&settings);
    }
    match cli.command {
        Command::Check(args) => check::run(&settings, &args),
        Command::Show(args) => show::run(&settings, &args),
        Command::Render(args) => render::run(&settings, &args),
        Command::Diff(args) => diff::run(&settings, &args),
        Command::Apply(args) => apply::run(&settings, &args),
        Command::Flush => flush::run(&settings),
        Command::Run => run::run(&settings),
        Command::Status(args) => status::run(&settings, &args),
        Command::Explain(args) => explain::run(&settings, &args),
        Command::Confirm => confirm::run(&settings),
        Command::Datastore(command) => datastore::run(&settings, &command),
        Command::ConfirmWatch(args) => confirm::watch(&settings, &args),
    }
}
