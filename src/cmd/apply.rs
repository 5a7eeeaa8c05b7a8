//! `hostfw apply`.

use super::CmdResult;
use crate::settings::Settings;

pub fn run(settings: &Settings, args: &crate::cli::ApplyArgs) -> CmdResult {
    let _ = (settings, args);
    Err("hostfw apply: not implemented yet".into())
}
