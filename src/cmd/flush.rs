//! `hostfw flush`: remove every chain, hook rule and ipset hostfw owns, and nothing else. Needs
//! no valid policy directory (a broken one must not prevent cleaning up).

use super::apply::{open_dataplane, summary};
use super::{CmdResult, Exit};
use crate::lock;
use crate::settings::Settings;
use crate::sync::{self, SyncOptions};

pub fn run(settings: &Settings) -> CmdResult {
    let _lock = lock::acquire_logged(&settings.lock_path())?;
    let dp = open_dataplane(settings, None)?;
    let report = sync::flush(&dp, &SyncOptions::default())?;
    println!("{}", summary("flushed", &report));
    Ok(Exit::Ok)
}
