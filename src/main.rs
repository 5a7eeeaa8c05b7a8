//! The `hostfw` binary: parse the command line, start logging, run the command, map the outcome
//! to exit codes (0 ok, 1 invalid input or changes pending, 2 error). Thin by design.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = hostfw::cli::Cli::parse();
    hostfw::logging::init(cli.global.log_level.as_deref());
    match hostfw::cmd::run(cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("hostfw: error: {e}");
            ExitCode::from(hostfw::cmd::Exit::Error.code())
        }
    }
}
