//! Signals: SIGHUP asks for a reload, SIGTERM and SIGINT for a clean stop. signal-hook's
//! iterator blocks in its own thread; the handlers themselves only write to a self-pipe. A stop
//! also kills the iptables/ipset child the main thread may be waiting for
//! (`dataplane::cancel_children`): a hung restore must not keep systemd waiting for minutes.

use super::Event;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io;
use std::sync::mpsc::Sender;

/// Install the handlers (from now on these signals no longer kill the process) and forward
/// them as events.
pub(crate) fn spawn(tx: Sender<Event>) -> io::Result<()> {
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("hostfw-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let event = if sig == SIGHUP {
                    Event::Reload
                } else {
                    crate::dataplane::cancel_children();
                    Event::Stop
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
