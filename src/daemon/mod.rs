//! The daemon (`hostfw run`): the only home of signals and netlink. Helper threads (those two,
//! the policy source's change trigger, inotify for the directory, and the engine's drift-check
//! reads) feed one channel with `Event`s; one loop (`event_loop`) waits on it with a deadline
//! for debounce, refresh, post-write checks, retries and the watchdog, and drives an `Engine`
//! that does the real work (load policies, reconcile the kernel). The loop knows nothing of
//! YAML, rulesets or iptables.

mod engine;
mod event_loop;
pub mod last_good;
mod netlink;
mod publish;
mod signals;
mod timers;

pub use self::engine::{tune_malloc, RealEngine};
pub use self::event_loop::{Daemon, Exit, LoopConfig, Waiter};
pub use self::publish::{send_notify, Notice, Publisher, SystemPublisher};

use crate::diag::Diagnostic;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Something that happened outside the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A policy file (or the policy directory itself) changed. Debounced; `settled` when the
    /// last change was complete (a file closed after writing, renamed in, deleted), so a short
    /// quiet period is enough, rather than a file just created and probably still being written.
    PolicyChanged { settled: bool },
    /// A link or address appeared, changed or disappeared. Debounced.
    InterfacesChanged,
    /// SIGHUP: reload now.
    Reload,
    /// SIGTERM or SIGINT: stop, leaving the rules in place.
    Stop,
    /// The drift check's read of the kernel that `Engine::read_in_background` numbered `read`
    /// is done.
    KernelRead { read: u64 },
}

/// Where `Engine::load` reads policies from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// The policy directory.
    Directory,
    /// The saved last good set.
    LastGood,
}

/// Where a reconcile takes the kernel's state from before planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The state the engine's last read or write left (policy edits); the next drift check
    /// reads what that missed.
    Cached,
    /// A read now (drift checks, SIGHUP).
    Fresh,
    /// The read `Engine::read_in_background` started, now done; a fresh read instead when a
    /// reconcile ran since it started (the read may not show what that one wrote).
    Finished,
}

/// Timers the policy set configures (FelixConfiguration); zero disables a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// `iptablesRefreshInterval`: full re-read of the kernel.
    pub refresh: Duration,
    /// `iptablesPostWriteCheckIntervalSecs`: first re-read after a write; doubles after each.
    pub post_write: Duration,
}

/// What loading a policy set produced.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadOutcome {
    /// Valid: it is now the engine's desired state.
    Valid {
        /// sha256 over file names and contents, hex.
        source_hash: String,
        /// Warnings (valid sets may have them).
        diagnostics: Vec<Diagnostic>,
        intervals: Intervals,
    },
    /// Invalid (or unreadable): the engine keeps its previous desired state.
    Invalid { diagnostics: Vec<Diagnostic> },
}

/// What one reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// `legacy` or `nft`.
    pub backend: String,
    /// Chains created or rewritten.
    pub chains_written: usize,
    /// One line per change made (chain rewritten, hook restored, set updated); empty when the
    /// kernel already matched.
    pub changes: Vec<String>,
    /// GlobalNetworkPolicies in force on this node (named by `hostfw status` counters).
    pub policies: Vec<String>,
    /// Foreign jumps our inserted hooks precede, as warnings (published in status.json).
    pub overtaken: Vec<String>,
    /// Nothing was reconciled: a pending `apply --confirm` (or its rollback) owns the kernel.
    /// A set loaded meanwhile is neither applied nor recorded as last good.
    pub held: bool,
}

/// Errors the engine reports; the loop only logs and records them.
pub type EngineError = Box<dyn std::error::Error + Send + Sync>;

/// The work the loop drives. The real one (`engine::RealEngine`, started by `cmd::run`) reads
/// the policy source, computes the desired state and reconciles through the dataplane; tests
/// use a scripted fake.
pub trait Engine {
    /// Read and validate policies; a valid set replaces the desired state (resolved against the
    /// current interfaces), an invalid one leaves it alone.
    fn load(&mut self, from: PolicySource) -> LoadOutcome;
    /// Re-read the host's interfaces; true when the desired state changed because of them.
    fn interfaces_changed(&mut self) -> bool;
    /// Bring the kernel to the desired state (plan, write, check), planning from `read`.
    fn reconcile(&mut self, read: Read) -> Result<ApplyReport, EngineError>;
    /// Start a drift check's read of the kernel on a helper thread and return its number:
    /// `Event::KernelRead` with it reaches the loop when it is done, and the loop then
    /// reconciles from it (`Read::Finished`), so an edit arriving meanwhile need not wait for
    /// the read. None when this engine reads only inside `reconcile` (the loop then checks with
    /// `Read::Fresh` at once).
    fn read_in_background(&mut self) -> Option<u64> {
        None
    }
    /// Whether the kernel holds any hostfw chains (false at boot).
    fn kernel_has_state(&mut self) -> Result<bool, EngineError>;
    /// Save the desired state's policy files as the last good set.
    fn save_last_good(&mut self) -> Result<(), EngineError>;
    /// The policy datastore's connection, for status; None for the policy directory.
    fn datastore(&self) -> Option<crate::status::Datastore> {
        None
    }
}

/// The production `Waiter`: a channel fed by the helper threads and the monotonic clock.
pub struct ChannelWaiter {
    rx: mpsc::Receiver<Event>,
}

impl ChannelWaiter {
    pub fn new(rx: mpsc::Receiver<Event>) -> ChannelWaiter {
        ChannelWaiter { rx }
    }
}

impl Waiter for ChannelWaiter {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wait(&mut self, deadline: Option<Instant>) -> Option<Event> {
        // Every sender gone means no signal can reach us any more: stop rather than spin.
        match deadline {
            None => Some(self.rx.recv().unwrap_or(Event::Stop)),
            Some(deadline) => {
                let timeout = deadline.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(timeout) {
                    Ok(event) => Some(event),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => Some(Event::Stop),
                }
            }
        }
    }
}

/// Start the helper threads (signals, the policy source's change trigger, netlink) feeding one
/// channel; returns its waiter and a sender for the engine's own helper thread
/// (`RealEngine::reading_in_background`). Signals are blocked from their default action before
/// this returns, so a SIGTERM arriving during the first apply is not lost.
pub fn spawn_sources(
    policies: &dyn crate::source::Source,
) -> std::io::Result<(ChannelWaiter, mpsc::Sender<Event>)> {
    let (tx, rx) = mpsc::channel();
    signals::spawn(tx.clone())?;
    let changes = tx.clone();
    let notify = Box::new(move |c: crate::source::Change| {
        changes
            .send(Event::PolicyChanged { settled: c.settled })
            .is_ok()
    });
    if let Err(e) = policies.watch(notify) {
        // Still enforce and repair; edits then take effect on SIGHUP (systemctl reload).
        log::error!(
            "cannot watch {}: {e}; send SIGHUP after editing policies",
            policies.describe()
        );
    }
    if let Err(e) = netlink::spawn(tx.clone()) {
        // Without link notifications the refresh timer still catches interface changes.
        log::warn!(
            "cannot listen for interface changes (netlink): {e}; relying on the refresh timer"
        );
    }
    Ok((ChannelWaiter::new(rx), tx))
}
