//! `hostfw run`: the daemon. Takes the lock, starts the event sources and runs the loop with the
//! real engine; maps the loop's end to the exit status (0 stopped, 2 persistent failure).

use super::CmdResult;
use crate::settings::Settings;

pub fn run(settings: &Settings) -> CmdResult {
    let _ = settings;
    Err("hostfw run: the engine is wired once sync::reconcile is merged".into())
}
