//! `hostfw run`: the daemon. Holds the daemon lock for its whole life (one daemon per run
//! directory; the writer lock shared with one-shot commands is taken per reconcile by the
//! engine), starts the event sources (the policy directory's watcher among them), runs the loop
//! with the real engine, and maps the loop's end to the exit status (0 stopped by a signal, 2
//! after persistent failure so systemd restarts it, 4 without CAP_NET_ADMIN: a restart cannot
//! help, so the unit does not restart on it).

use super::{CmdResult, Exit};
use crate::daemon::{self, Daemon, LoopConfig, RealEngine, SystemPublisher};
use crate::settings::Settings;
use std::time::Duration;

pub fn run(settings: &Settings) -> CmdResult {
    // First, before the lock or any kernel access: without CAP_NET_ADMIN (an unprivileged
    // container, a non-root user) every iptables call would fail, and systemd would restart us
    // forever. Say it once, clearly, with an exit status the unit lists in
    // RestartPreventExitStatus=.
    if !has_net_admin() {
        log::error!(
            "hostfw run needs CAP_NET_ADMIN to program iptables and ipsets, and this process \
             does not have it (not root, or a container started without NET_ADMIN); not starting"
        );
        return Ok(Exit::NoPrivilege);
    }
    daemon::tune_malloc();
    // Before the signal handlers: a SIGTERM while waiting for an old instance still ends us.
    let _daemon = crate::lock::acquire_logged(&settings.run_dir.join("daemon.lock"))?;
    let source = settings.policy_source()?;
    log::info!(
        "hostfw {} starting: node {:?}, policies from {}",
        env!("CARGO_PKG_VERSION"),
        settings.node,
        source.describe()
    );
    let (waiter, events) = daemon::spawn_sources(source.as_ref())?;
    if watchdog_period().is_some() {
        // A long restore blocks the loop; the wait pings for it (the child's deadline still
        // bounds a hung one).
        crate::dataplane::while_waiting(|| {
            let _ = daemon::send_notify(&[sd_notify::NotifyState::Watchdog]);
        });
    }
    let cfg = LoopConfig {
        watchdog: watchdog_period(),
        ..LoopConfig::default()
    };
    let publisher = SystemPublisher::new(settings.status_path());
    let engine = RealEngine::new(settings.clone(), source).reading_in_background(events);
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

/// Whether CAP_NET_ADMIN is in this process's effective set (`CapEff` of /proc/self/status).
/// When /proc cannot say, assume yes: the iptables calls will then report what is wrong.
fn has_net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| net_admin_in_status(&text))
        .unwrap_or(true)
}

/// CAP_NET_ADMIN (capability 12) in the `CapEff:` line of a /proc/PID/status text.
fn net_admin_in_status(text: &str) -> Option<bool> {
    const CAP_NET_ADMIN: u32 = 12;
    let hex = text.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    let mask = u64::from_str_radix(hex, 16).ok()?;
    Some(mask & (1 << CAP_NET_ADMIN) != 0)
}

#[cfg(test)]
mod tests {
    use super::net_admin_in_status;

    #[test]
    fn net_admin_is_read_from_the_effective_set() {
        let root = "Name:\thostfw\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(net_admin_in_status(root), Some(true));
        // CapPrm has it, CapEff does not: what counts is the effective set.
        let dropped = "CapPrm:\t0000000000001000\nCapEff:\t0000000000000400\n";
        assert_eq!(net_admin_in_status(dropped), Some(false));
        assert_eq!(net_admin_in_status("Name:\thostfw\n"), None);
    }
}
