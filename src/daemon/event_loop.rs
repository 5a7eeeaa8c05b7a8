//! The daemon's one loop: wait for the next event or the nearest deadline, then do what is due
//! (debounced reload, interface re-resolve, retry, post-write check, refresh, watchdog). All
//! effects go through `Engine`, `Waiter` (events and the clock) and `Publisher` (systemd and
//! status.json), so tests run it against fakes with a simulated clock.

use super::timers::{Backoff, Debounce, PostWriteChecks};
use super::{
    ApplyReport, Engine, Event, Intervals, LoadOutcome, Notice, PolicySource, Publisher, Read,
};
use crate::diag::Diagnostic;
use crate::status::{self, ApplyRecord, PolicyInfo, PolicyOrigin, State, Status};
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

/// Where events come from and what time it is.
pub trait Waiter {
    /// The monotonic clock.
    fn now(&self) -> Instant;
    /// Wall-clock time, for timestamps in status.json.
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    /// Block until an event arrives (`Some`) or `deadline` passes (`None`). No deadline: block
    /// until an event arrives.
    fn wait(&mut self, deadline: Option<Instant>) -> Option<Event>;
}

/// The loop's own tunables (the policy set's timers come from `Engine::load`).
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Quiet time after an interface change before re-applying.
    pub debounce: Duration,
    /// Quiet time after a change that completed a file (closed, renamed in, deleted).
    pub debounce_settled: Duration,
    /// Longest a continuous burst of changes can postpone a reload.
    pub debounce_max: Duration,
    /// Longest wait for a file created in the policy directory to be closed by its writer
    /// (`cp`, a slow upload) before reading it anyway.
    pub writer_wait: Duration,
    /// First retry delay after a failed reconcile; doubles up to `retry_max`.
    pub retry_first: Duration,
    pub retry_max: Duration,
    /// Failed reconciles in a row tolerated before exiting (systemd then restarts us).
    pub retry_attempts: u32,
    /// Watchdog ping period (half of `WATCHDOG_USEC`), if the watchdog is on.
    pub watchdog: Option<Duration>,
}

impl Default for LoopConfig {
    fn default() -> LoopConfig {
        LoopConfig {
            debounce: Duration::from_millis(100),
            debounce_settled: Duration::from_millis(25),
            debounce_max: Duration::from_secs(1),
            writer_wait: Duration::from_secs(5),
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            retry_attempts: 5,
            watchdog: None,
        }
    }
}

/// The log line for an invalid policy set (directory or datastore). Only a daemon that has applied a set keeps
/// rules in force; at start nothing has been applied yet, and what happens instead (the last
/// good set, the kernel left alone) is logged next.
fn rejection(errors: usize, in_force: bool) -> String {
    let then = if in_force {
        "keeping the rules in force"
    } else {
        "nothing of it is applied"
    };
    format!("policy set is invalid ({errors} error(s)); {then}")
}

/// How the loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT: exit 0, rules stay.
    Stopped,
    /// Reconciling kept failing: exit non-zero so systemd restarts us.
    Failed(String),
}

/// Why a reconcile runs: to reach a new desired state, or to check the kernel still matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Apply,
    Check,
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Purpose::Apply => "apply",
            Purpose::Check => "drift check",
        })
    }
}

/// A newly loaded policy set that is not in the kernel yet.
#[derive(Debug, Clone)]
struct Unapplied {
    source_hash: String,
    origin: PolicyOrigin,
}

/// The daemon: its engine, its event source, its report sink and every timer.
pub struct Daemon<E, W, P> {
    engine: E,
    waiter: W,
    publisher: P,
    cfg: LoopConfig,
    status: Status,
    /// The engine holds a valid set to enforce.
    has_desired: bool,
    unapplied: Option<Unapplied>,
    applied_hash: Option<String>,
    /// The policy directory's last load was invalid.
    dir_invalid: bool,
    /// Reconciling failed and has not succeeded since.
    failing: bool,
    pending_reload: bool,
    /// The next reconcile reads the kernel afresh instead of planning from the last verified
    /// state (set by SIGHUP: a reload is also a full repair pass).
    reread_kernel: bool,
    pending_interfaces: bool,
    debounce: Debounce,
    refresh: Duration,
    next_refresh: Option<Instant>,
    post_write: PostWriteChecks,
    /// The number of the drift check's read running on the engine's helper thread
    /// (`Engine::read_in_background`).
    reading: Option<u64>,
    /// That read is done and no reconcile has run since: the check is due.
    read_done: bool,
    backoff: Backoff,
    retry_at: Option<(Instant, Purpose)>,
    next_watchdog: Option<Instant>,
    ready: bool,
    last_summary: String,
}

impl<E: Engine, W: Waiter, P: Publisher> Daemon<E, W, P> {
    pub fn new(engine: E, waiter: W, publisher: P, cfg: LoopConfig, node: &str) -> Self {
        let status = Status::starting(node, std::process::id(), waiter.wall());
        let next_watchdog = cfg.watchdog.map(|w| waiter.now() + w);
        Daemon {
            debounce: Debounce::new(cfg.debounce_max),
            backoff: Backoff::new(cfg.retry_first, cfg.retry_max, cfg.retry_attempts),
            engine,
            waiter,
            publisher,
            cfg,
            status,
            has_desired: false,
            unapplied: None,
            applied_hash: None,
            dir_invalid: false,
            failing: false,
            pending_reload: false,
            reread_kernel: false,
            pending_interfaces: false,
            refresh: Duration::ZERO,
            next_refresh: None,
            post_write: PostWriteChecks::new(Duration::ZERO),
            reading: None,
            read_done: false,
            retry_at: None,
            next_watchdog,
            ready: false,
            last_summary: String::new(),
        }
    }

    /// Run until stopped or until reconciling keeps failing.
    pub fn run(mut self) -> Exit {
        match self.run_inner() {
            Ok(()) => Exit::Stopped,
            Err(Fatal(msg)) => {
                log::error!("{msg}");
                Exit::Failed(msg)
            }
        }
    }

    fn run_inner(&mut self) -> Result<(), Fatal> {
        self.publish();
        self.start()?;
        self.ready_if_settled();
        loop {
            let deadline = self.next_deadline();
            let event = self.waiter.wait(deadline);
            let now = self.waiter.now();
            match event {
                Some(Event::Stop) => {
                    log::info!("stopping; the rules stay in the kernel");
                    self.publisher.notify(&[Notice::Stopping]);
                    return Ok(());
                }
                Some(Event::Reload) => {
                    log::info!("SIGHUP: reloading the policy directory and re-reading the kernel");
                    self.debounce.clear();
                    self.pending_reload = false;
                    self.pending_interfaces = false;
                    self.reread_kernel = true;
                    self.reload()?;
                    if std::mem::take(&mut self.reread_kernel) {
                        // The directory was invalid, so nothing was applied: still repair the
                        // kernel to the rules in force.
                        self.reconcile(Purpose::Check)?;
                    }
                    // Counted after the reload's outcome is recorded: systemd/hostfw-reload
                    // waits for this to change, not for any rewrite of status.json.
                    self.status.reloads += 1;
                    self.publish();
                }
                Some(Event::PolicyChanged { settled }) => {
                    log::debug!("policy source changed");
                    self.pending_reload = true;
                    if settled {
                        self.debounce.poke(now, self.cfg.debounce_settled);
                    } else {
                        // A file is still open for writing (or the directory is being
                        // replaced): reading now could see half a file.
                        self.debounce.poke_writing(now, self.cfg.writer_wait);
                    }
                }
                Some(Event::InterfacesChanged) => {
                    log::debug!("interfaces changed");
                    self.pending_interfaces = true;
                    self.debounce.poke(now, self.cfg.debounce);
                }
                // Not the awaited one when a reconcile overtook it (and cleared `reading`).
                Some(Event::KernelRead { read }) if self.reading == Some(read) => {
                    log::debug!("the drift check's read of the kernel is done");
                    self.reading = None;
                    self.read_done = true;
                }
                Some(Event::KernelRead { .. }) => {}
                None => {}
            }
            self.run_due()?;
            self.ready_if_settled();
        }
    }

    /// Startup: load and apply the directory; when it is invalid, fall back (docs/design.md,
    /// "Failure model").
    fn start(&mut self) -> Result<(), Fatal> {
        let outcome = self.engine.load(PolicySource::Directory);
        if self.adopt_directory(outcome)? {
            Ok(())
        } else {
            self.start_degraded()
        }
    }

    /// A load of the policy directory: a valid set is accepted and applied (`Ok(true)`); an
    /// invalid one is rejected (`Ok(false)`), and the caller decides what runs instead.
    fn adopt_directory(&mut self, outcome: LoadOutcome) -> Result<bool, Fatal> {
        match outcome {
            LoadOutcome::Valid {
                source_hash,
                diagnostics,
                intervals,
            } => {
                let origin = match self.engine.datastore() {
                    Some(_) => PolicyOrigin::Datastore,
                    None => PolicyOrigin::Directory,
                };
                self.accept(source_hash, diagnostics, intervals, origin);
                self.reconcile(Purpose::Apply)?;
                Ok(true)
            }
            LoadOutcome::Invalid { diagnostics } => {
                self.reject(diagnostics);
                Ok(false)
            }
        }
    }

    fn start_degraded(&mut self) -> Result<(), Fatal> {
        match self.engine.kernel_has_state() {
            Ok(false) => {
                log::warn!(
                    "no hostfw rules in the kernel (boot?): applying the last good policy set"
                );
                match self.engine.load(PolicySource::LastGood) {
                    LoadOutcome::Valid {
                        source_hash,
                        intervals,
                        ..
                    } => {
                        self.accept(source_hash, Vec::new(), intervals, PolicyOrigin::LastGood);
                        self.reconcile(Purpose::Apply)
                    }
                    LoadOutcome::Invalid { diagnostics } => {
                        let why = diagnostics
                            .iter()
                            .find(|d| d.is_error())
                            .map(|d| d.to_string())
                            .unwrap_or_else(|| "no saved set".to_string());
                        let msg = format!(
                            "no usable last good policy set ({why}): nothing applied until the policy directory is fixed"
                        );
                        log::error!("{msg}");
                        self.status.last_error = Some(msg);
                        self.publish();
                        Ok(())
                    }
                }
            }
            Ok(true) => {
                log::warn!(
                    "the kernel holds hostfw rules from before: leaving them as they are until the policy directory is fixed"
                );
                self.publish();
                Ok(())
            }
            Err(e) => {
                let msg =
                    format!("cannot read the kernel's rules ({e}): leaving the kernel as it is");
                log::error!("{msg}");
                self.status.last_error = Some(msg);
                self.publish();
                Ok(())
            }
        }
    }

    /// Load the directory again and apply it if valid.
    fn reload(&mut self) -> Result<(), Fatal> {
        let announce = self.ready;
        if announce {
            self.publisher.notify(&[Notice::Reloading]);
        }
        let started = self.waiter.now();
        let outcome = self.engine.load(PolicySource::Directory);
        log::debug!(
            "policy set read and checked in {} ms",
            status::millis(self.waiter.now().saturating_duration_since(started))
        );
        let result = match self.adopt_directory(outcome) {
            Ok(false) => {
                // The running set stays; only the new diagnostics are shown.
                self.publish();
                Ok(())
            }
            other => other.map(|_| ()),
        };
        if announce {
            let summary = self.status.summary();
            self.publisher
                .notify(&[Notice::Ready, Notice::Status(summary.clone())]);
            self.last_summary = summary;
        }
        result
    }

    /// A valid set became the engine's desired state.
    fn accept(
        &mut self,
        source_hash: String,
        diagnostics: Vec<Diagnostic>,
        intervals: Intervals,
        origin: PolicyOrigin,
    ) {
        for d in &diagnostics {
            crate::logging::diagnostic(d);
        }
        if origin != PolicyOrigin::LastGood {
            self.dir_invalid = false;
            self.status.diagnostics = diagnostics;
        }
        self.has_desired = true;
        self.refresh = intervals.refresh;
        self.post_write.set_base(intervals.post_write);
        let in_force = self.status.policy.as_ref().map(|p| p.origin);
        if self.applied_hash.as_deref() == Some(source_hash.as_str()) && in_force == Some(origin) {
            log::debug!("policy set unchanged; verifying the kernel");
            self.unapplied = None;
        } else {
            self.unapplied = Some(Unapplied {
                source_hash,
                origin,
            });
        }
    }

    /// An invalid directory: say everything that is wrong, keep what is in force.
    fn reject(&mut self, diagnostics: Vec<Diagnostic>) {
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        log::error!("{}", rejection(errors, self.status.policy.is_some()));
        for d in &diagnostics {
            crate::logging::diagnostic(d);
        }
        self.dir_invalid = true;
        self.status.diagnostics = diagnostics;
    }

    /// Everything whose deadline has passed.
    fn run_due(&mut self) -> Result<(), Fatal> {
        let now = self.waiter.now();
        if let (Some(at), Some(period)) = (self.next_watchdog, self.cfg.watchdog) {
            if at <= now {
                self.publisher.notify(&[Notice::Watchdog]);
                self.next_watchdog = Some(now + period);
            }
        }
        if self.debounce.deadline().is_some_and(|at| at <= now) {
            self.debounce.clear();
            let reload = std::mem::take(&mut self.pending_reload);
            let interfaces = std::mem::take(&mut self.pending_interfaces);
            if reload {
                // A load resolves against the current interfaces, so it covers both.
                self.reload()?;
            } else if interfaces && self.engine.interfaces_changed() {
                log::info!("interfaces changed: re-applying");
                self.reconcile(Purpose::Apply)?;
            }
        }
        let now = self.waiter.now();
        if let Some((at, purpose)) = self.retry_at {
            if at <= now {
                self.retry_at = None;
                self.reconcile(purpose)?;
            }
            return Ok(());
        }
        // A reload waiting for its quiet time goes first: at 10,000 policies a drift check
        // reads the whole kernel for tens of seconds, and the edit would wait behind it.
        if self.debounce.deadline().is_some() {
            return Ok(());
        }
        if std::mem::take(&mut self.read_done) {
            self.reconcile_from(Purpose::Check, Read::Finished)?;
            self.post_write.checked(self.waiter.now());
            return Ok(());
        }
        if self.reading.is_some() {
            return Ok(());
        }
        let post_write_due = self.post_write.deadline().is_some_and(|at| at <= now);
        if post_write_due {
            self.post_write.checked(now);
        }
        let refresh_due = self.next_refresh.is_some_and(|at| at <= now);
        if post_write_due || refresh_due {
            log::debug!(
                "{} check of the kernel",
                if refresh_due { "refresh" } else { "post-write" }
            );
            // Also a safety net for a missed netlink message.
            let purpose = if self.engine.interfaces_changed() {
                log::info!("interfaces changed: re-applying");
                Purpose::Apply
            } else {
                Purpose::Check
            };
            if purpose == Purpose::Check {
                if let Some(read) = self.engine.read_in_background() {
                    // At 10,000 policies the read takes seconds; the loop stays free for edits
                    // meanwhile, and the check itself waits for `Event::KernelRead`. No other
                    // check starts until then (`next_deadline`).
                    self.reading = Some(read);
                    return Ok(());
                }
            }
            self.reconcile(purpose)?;
            // Skip the intervals the check itself ran past, or a check slower than the
            // interval after it would start the next one at once.
            self.post_write.checked(self.waiter.now());
        }
        Ok(())
    }

    /// One reconcile with bookkeeping: status, timers, retries, last good. Drift checks must
    /// see the kernel as it is; applies may plan from the last verified state (a full save of a
    /// large ruleset costs as much as the write).
    fn reconcile(&mut self, purpose: Purpose) -> Result<(), Fatal> {
        let read = if purpose == Purpose::Check || std::mem::take(&mut self.reread_kernel) {
            Read::Fresh
        } else {
            Read::Cached
        };
        self.reconcile_from(purpose, read)
    }

    /// `reconcile`, planning from `read`.
    fn reconcile_from(&mut self, purpose: Purpose, read: Read) -> Result<(), Fatal> {
        // Any reconcile overtakes a background read: it may not show what this one writes.
        self.reading = None;
        self.read_done = false;
        if !self.has_desired {
            return Ok(());
        }
        let started = self.waiter.now();
        let result = self.engine.reconcile(read);
        let finished = self.waiter.now();
        let took = finished.saturating_duration_since(started);
        let purpose = if self.unapplied.is_some() {
            Purpose::Apply
        } else {
            purpose
        };
        match result {
            Ok(report) => {
                self.succeeded(purpose, report, finished, took);
                Ok(())
            }
            Err(e) => self.failed(purpose, e.to_string(), finished, took),
        }
    }

    fn succeeded(&mut self, purpose: Purpose, report: ApplyReport, now: Instant, took: Duration) {
        self.backoff.succeeded();
        if report.held {
            // The set stays unapplied: the next reload, edit or refresh after the hold applies
            // it and only then counts a generation and saves it as last good.
            self.retry_at = None;
            self.next_refresh = (!self.refresh.is_zero()).then(|| now + self.refresh);
            self.publish();
            return;
        }
        self.failing = false;
        self.retry_at = None;
        self.status.last_error = None;
        self.status.backend = Some(report.backend.clone());
        self.status.policies = report.policies.clone();
        self.status.overtaken = report.overtaken.clone();
        let wrote = !report.changes.is_empty() || report.chains_written > 0;
        if let Some(new) = self.unapplied.take() {
            let generation = self.status.policy.as_ref().map_or(0, |p| p.generation) + 1;
            log::info!(
                hostfw_generation = generation;
                "applied policy generation {generation} ({}{}): {} chain(s) written in {} ms",
                short(&new.source_hash),
                if new.origin == PolicyOrigin::LastGood {
                    ", last good set"
                } else {
                    ""
                },
                report.chains_written,
                status::millis(took)
            );
            if new.origin != PolicyOrigin::LastGood {
                if let Err(e) = self.engine.save_last_good() {
                    log::warn!("cannot save the last good policy set: {e}");
                }
            }
            self.applied_hash = Some(new.source_hash.clone());
            self.status.policy = Some(PolicyInfo {
                generation,
                source_hash: new.source_hash,
                origin: new.origin,
            });
        } else if purpose == Purpose::Apply && wrote {
            log::info!(
                "re-applied: {} chain(s) written in {} ms",
                report.chains_written,
                status::millis(took)
            );
        }
        if purpose == Purpose::Apply {
            self.status.last_apply = Some(ApplyRecord {
                time: status::rfc3339(self.waiter.wall()),
                duration_ms: status::millis(took),
                chains_written: report.chains_written,
                ok: true,
            });
        } else if wrote {
            self.status.drift_repairs += 1;
            self.status.last_repair = Some(status::rfc3339(self.waiter.wall()));
            log::warn!(
                "drift repaired (repair #{}): {}",
                self.status.drift_repairs,
                describe(&report)
            );
        }
        if wrote {
            self.post_write.wrote(now);
        }
        self.next_refresh = (!self.refresh.is_zero()).then(|| now + self.refresh);
        self.publish();
    }

    fn failed(
        &mut self,
        purpose: Purpose,
        error: String,
        now: Instant,
        took: Duration,
    ) -> Result<(), Fatal> {
        self.failing = true;
        log::error!("{purpose} failed: {error}");
        self.status.last_error = Some(error.clone());
        if purpose == Purpose::Apply {
            self.status.last_apply = Some(ApplyRecord {
                time: status::rfc3339(self.waiter.wall()),
                duration_ms: status::millis(took),
                chains_written: 0,
                ok: false,
            });
        }
        let outcome = match self.backoff.failed() {
            Some(delay) => {
                log::warn!(
                    "retrying in {} ms (failure {} of {})",
                    delay.as_millis(),
                    self.backoff.failures(),
                    self.cfg.retry_attempts
                );
                self.retry_at = Some((now + delay, purpose));
                Ok(())
            }
            None => Err(Fatal(format!(
                "giving up after {} failed attempts; last error: {error}",
                self.backoff.failures()
            ))),
        };
        self.publish();
        outcome
    }

    /// READY=1 once the first apply is done (or there is nothing we can apply), not while the
    /// first apply is still being retried.
    fn ready_if_settled(&mut self) {
        if self.ready || self.retry_at.is_some() {
            return;
        }
        self.ready = true;
        let summary = self.status.summary();
        log::info!("ready: {summary}");
        self.publisher
            .notify(&[Notice::Ready, Notice::Status(summary.clone())]);
        self.last_summary = summary;
    }

    fn state(&self) -> State {
        if self.failing {
            State::Failed
        } else if self.dir_invalid
            || self.status.policy.as_ref().map(|p| p.origin) == Some(PolicyOrigin::LastGood)
        {
            State::Degraded
        } else if self.status.policy.is_some() {
            State::Ok
        } else {
            State::Starting
        }
    }

    /// Write status.json and, once ready, tell systemd when the summary changed.
    fn publish(&mut self) {
        self.status.state = self.state();
        self.status.datastore = self.engine.datastore();
        self.status.updated = status::rfc3339(self.waiter.wall());
        self.publisher.status(&self.status);
        if self.ready {
            let summary = self.status.summary();
            if summary != self.last_summary {
                self.publisher.notify(&[Notice::Status(summary.clone())]);
                self.last_summary = summary;
            }
        }
    }

    /// The nearest moment something is due; None when only an event can wake us.
    fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines = vec![self.next_watchdog, self.debounce.deadline()];
        if let Some((at, _)) = self.retry_at {
            deadlines.push(Some(at));
        } else if self.debounce.deadline().is_none() && self.reading.is_none() {
            // While a reload is pending the checks wait for it, and while a check's read runs
            // it is the next check (`run_due`).
            deadlines.push(self.post_write.deadline());
            deadlines.push(self.next_refresh);
        }
        deadlines.into_iter().flatten().min()
    }
}

/// A fatal condition: the loop ends and the process exits non-zero.
#[derive(Debug)]
struct Fatal(String);

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn describe(report: &ApplyReport) -> String {
    if report.changes.is_empty() {
        format!("{} chain(s) rewritten", report.chains_written)
    } else {
        report.changes.join("; ")
    }
}

#[cfg(test)]
mod tests;
