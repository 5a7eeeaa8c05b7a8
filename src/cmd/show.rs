//! `hostfw show`.

use super::CmdResult;
use crate::settings::Settings;

pub fn run(settings: &Settings, args: &crate::cli::ShowArgs) -> CmdResult {
    let _ = (settings, args);
    Err("hostfw show: not implemented yet".into())
}
