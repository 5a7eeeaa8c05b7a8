//! `hostfw render`.

use super::CmdResult;
use crate::settings::Settings;

pub fn run(settings: &Settings, args: &crate::cli::RenderArgs) -> CmdResult {
    let _ = (settings, args);
    Err("hostfw render: not implemented yet".into())
}
