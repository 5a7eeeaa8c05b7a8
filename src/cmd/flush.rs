//! `hostfw flush`: remove every chain, hook rule and ipset hostfw owns, and nothing else. Needs
//! no valid policy directory (a broken one must not prevent cleaning up).

use super::apply::{open_dataplane, summary};
use super::{CmdResult, Exit};
use crate::lock;
use crate::settings::Settings;
use crate::sync::{self, SyncOptions};

/// A pending `apply --confirm` is cancelled first (and the caller told): its rollback would
/// otherwise restore the snapshot's rules after the flush.
pub fn run(settings: &Settings) -> CmdResult {
    let _lock = lock::acquire_logged(&settings.lock_path())?;
    if let Some(p) = crate::confirm::pending(&settings.run_dir)? {
        crate::confirm::clear(&settings.run_dir)?;
        println!(
            "cancelled the pending apply --confirm (watcher pid {}): its rollback would have \
             restored the previous rules after this flush",
            p.watcher_pid
                .map_or_else(|| "?".to_string(), |pid| pid.to_string())
        );
    }
    let dp = open_dataplane(settings, None)?;
    let report = sync::flush(&dp, &SyncOptions::default())?;
    println!("{}", summary("flushed", &report));
    Ok(Exit::Ok)
}
