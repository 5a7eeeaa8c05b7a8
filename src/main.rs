//! The `hostfw` binary: parse the command line, start logging, run the command, map the outcome
//! to exit codes (0 ok, 1 invalid input or changes pending, 2 error). Thin by design.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = hostfw::cli::Cli::parse();
    let level = cli.global.log_level.clone();
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(level) = level {
        builder.parse_filters(&level);
    }
    builder.format_timestamp(None).init();
    match hostfw::cmd::run(cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("hostfw: error: {e}");
            ExitCode::from(hostfw::cmd::Exit::Error.code())
        }
    }
}
