//! `hostfw run`: the daemon. Holds the daemon lock for its whole life (one daemon per run
//! directory; the writer lock shared with one-shot commands is taken per reconcile by the
//! engine), starts the event sources (the policy directory's watcher among them), runs the loop with the real engine, and maps the loop's
//! end to the exit status (0 stopped by a signal, 2 after persistent failure so systemd
//! restarts it).

use super::{CmdResult, Exit};
use crate::daemon::{self, Daemon, LoopConfig, RealEngine, SystemPublisher};
use crate::settings::Settings;
use std::time::Duration;

pub fn run(settings: &Settings) -> CmdResult {
    // Before the signal handlers: a SIGTERM while waiting for an old instance still ends us.
    let _daemon = crate::lock::acquire_logged(&settings.run_dir.join("daemon.lock"))?;
    let source = settings.policy_source()?;
    log::info!(
        "hostfw {} starting: node {:?}, policies from {}",
        env!("CARGO_PKG_VERSION"),
        settings.node,
        source.describe()
    );
    let waiter = daemon::spawn_sources(source.as_ref())?;
    let cfg = LoopConfig {
        watchdog: watchdog_period(),
        ..LoopConfig::default()
    };
    let publisher = SystemPublisher::new(settings.status_path());
    let engine = RealEngine::new(settings.clone(), source);
    match Daemon::new(engine, waiter, publisher, cfg, &settings.node).run() {
        daemon::Exit::Stopped => Ok(Exit::Ok),
        // Already logged by the loop, with the last error.
        daemon::Exit::Failed(_) => Ok(Exit::Error),
    }
}

/// Half the watchdog interval systemd expects, when it armed one for this process.
fn watchdog_period() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}
