//! `hostfw diff`.

use super::CmdResult;
use crate::settings::Settings;

pub fn run(settings: &Settings, args: &crate::cli::DiffArgs) -> CmdResult {
    let _ = (settings, args);
    Err("hostfw diff: not implemented yet".into())
}
