//! `hostfw flush`.

use super::CmdResult;
use crate::settings::Settings;

pub fn run(settings: &Settings) -> CmdResult {
    let _ = settings;
    Err("hostfw flush: not implemented yet".into())
}
