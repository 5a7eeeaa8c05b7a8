//! Loop tests: a scripted engine, a simulated clock that jumps to the next event or deadline,
//! and a publisher that records what systemd and status.json would have seen.

use super::*;
use crate::daemon::EngineError;
use crate::diag::Severity;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// Simulated monotonic clock shared by the waiter and the engine.
#[derive(Clone)]
struct Clock {
    base: Instant,
    now: Rc<Cell<Instant>>,
}

impl Clock {
    fn new() -> Clock {
        let base = Instant::now();
        Clock {
            base,
            now: Rc::new(Cell::new(base)),
        }
    }
    fn elapsed(&self) -> Duration {
        self.now.get() - self.base
    }
}

/// Events at their times (since the start), in time order.
type Script = Rc<RefCell<VecDeque<(Duration, Event)>>>;

/// Delivers scripted events at their times; otherwise jumps to the deadline.
struct FakeWaiter {
    clock: Clock,
    script: Script,
    /// Every deadline the loop asked to wait for, relative to the start.
    deadlines: Rc<RefCell<Vec<Option<Duration>>>>,
}

impl Waiter for FakeWaiter {
    fn now(&self) -> Instant {
        self.clock.now.get()
    }

    fn wait(&mut self, deadline: Option<Instant>) -> Option<Event> {
        let mut seen = self.deadlines.borrow_mut();
        seen.push(deadline.map(|d| d - self.clock.base));
        assert!(seen.len() < 10_000, "the loop does not settle");
        let mut script = self.script.borrow_mut();
        let next = script.front().map(|(at, _)| self.clock.base + *at);
        match (next, deadline) {
            (Some(at), Some(d)) if d < at => {
                self.clock.now.set(d.max(self.clock.now.get()));
                None
            }
            (Some(at), _) => {
                self.clock.now.set(at.max(self.clock.now.get()));
                script.pop_front().map(|(_, e)| e)
            }
            (None, Some(d)) => {
                self.clock.now.set(d.max(self.clock.now.get()));
                None
            }
            (None, None) => panic!("the loop would block forever with nothing scripted"),
        }
    }
}

/// What the fake engine was asked to do, and when (time since start).
#[derive(Default)]
struct EngineLog {
    calls: Vec<(Duration, &'static str)>,
    /// Per reconcile, in order: where it took the kernel's state from.
    reads: Vec<Read>,
    /// Engine calls and status.json writes (`"status"`), in the order they happened.
    sequence: Vec<&'static str>,
}

impl EngineLog {
    fn times(&self, call: &str) -> Vec<Duration> {
        self.calls
            .iter()
            .filter(|(_, c)| *c == call)
            .map(|(t, _)| *t)
            .collect()
    }
    fn count(&self, call: &str) -> usize {
        self.times(call).len()
    }
}

struct FakeEngine {
    clock: Clock,
    log: Rc<RefCell<EngineLog>>,
    dir_loads: VecDeque<LoadOutcome>,
    last_good: LoadOutcome,
    reconciles: VecDeque<Result<ApplyReport, String>>,
    /// Result once `reconciles` is used up.
    reconcile_default: Result<ApplyReport, String>,
    kernel_has_state: bool,
    interfaces: VecDeque<bool>,
    /// How long each reconcile takes on the simulated clock.
    reconcile_time: Duration,
    /// How long a background read takes; None: the engine reads only in `reconcile`.
    read_time: Option<Duration>,
    /// Where a finished background read is announced.
    script: Script,
    reads_started: u64,
}

impl FakeEngine {
    fn record(&self, call: &'static str) {
        let mut log = self.log.borrow_mut();
        log.calls.push((self.clock.elapsed(), call));
        log.sequence.push(call);
    }
}

impl Engine for FakeEngine {
    fn load(&mut self, from: PolicySource) -> LoadOutcome {
        match from {
            PolicySource::Directory => {
                self.record("load");
                self.dir_loads
                    .pop_front()
                    .expect("unexpected load of the policy directory")
            }
            PolicySource::LastGood => {
                self.record("load-last-good");
                self.last_good.clone()
            }
        }
    }

    fn interfaces_changed(&mut self) -> bool {
        self.interfaces.pop_front().unwrap_or(false)
    }

    fn reconcile(&mut self, read: Read) -> Result<ApplyReport, EngineError> {
        self.record("reconcile");
        self.clock
            .now
            .set(self.clock.now.get() + self.reconcile_time);
        self.log.borrow_mut().reads.push(read);
        self.reconciles
            .pop_front()
            .unwrap_or_else(|| self.reconcile_default.clone())
            .map_err(EngineError::from)
    }

    fn read_in_background(&mut self) -> Option<u64> {
        let took = self.read_time?;
        self.record("read-in-background");
        self.reads_started += 1;
        let read = self.reads_started;
        let done = self.clock.elapsed() + took;
        let mut script = self.script.borrow_mut();
        let at = script.partition_point(|(t, _)| *t <= done);
        script.insert(at, (done, Event::KernelRead { read }));
        Some(read)
    }

    fn kernel_has_state(&mut self) -> Result<bool, EngineError> {
        self.record("kernel-has-state");
        Ok(self.kernel_has_state)
    }

    fn save_last_good(&mut self) -> Result<(), EngineError> {
        self.record("save-last-good");
        Ok(())
    }
}

#[derive(Default)]
struct Published {
    notices: Vec<(Duration, Notice)>,
    statuses: Vec<Status>,
}

struct FakePublisher {
    clock: Clock,
    out: Rc<RefCell<Published>>,
    engine: Rc<RefCell<EngineLog>>,
}

impl Publisher for FakePublisher {
    fn notify(&mut self, notices: &[Notice]) {
        let t = self.clock.elapsed();
        let mut out = self.out.borrow_mut();
        out.notices.extend(notices.iter().map(|n| (t, n.clone())));
    }
    fn status(&mut self, status: &Status) {
        self.engine.borrow_mut().sequence.push("status");
        self.out.borrow_mut().statuses.push(status.clone());
    }
}

fn valid(hash: &str, refresh: Duration, post_write: Duration) -> LoadOutcome {
    LoadOutcome::Valid {
        source_hash: hash.to_string(),
        diagnostics: Vec::new(),
        intervals: Intervals {
            refresh,
            post_write,
        },
    }
}

/// Timers off: only events wake the loop.
fn valid_quiet(hash: &str) -> LoadOutcome {
    valid(hash, Duration::ZERO, Duration::ZERO)
}

fn error(file: &str, message: &str) -> Diagnostic {
    Diagnostic {
        file: file.into(),
        line: 3,
        column: 7,
        severity: Severity::Error,
        kind: Some("GlobalNetworkPolicy".into()),
        name: Some("p".into()),
        field: Some("spec.ingress[0].action".into()),
        message: message.into(),
    }
}

fn invalid(file: &str) -> LoadOutcome {
    LoadOutcome::Invalid {
        diagnostics: vec![error(file, "unknown action \"Alow\"")],
    }
}

fn wrote(chains: usize) -> ApplyReport {
    ApplyReport {
        backend: "legacy".into(),
        chains_written: chains,
        changes: vec![format!("filter: {chains} chain(s) written")],
        policies: vec!["allow-ssh".into()],
        overtaken: Vec::new(),
        held: false,
    }
}

fn in_sync() -> ApplyReport {
    ApplyReport {
        backend: "legacy".into(),
        ..ApplyReport::default()
    }
}

struct Run {
    exit: Exit,
    engine: Rc<RefCell<EngineLog>>,
    published: Rc<RefCell<Published>>,
    deadlines: Rc<RefCell<Vec<Option<Duration>>>>,
}

impl Run {
    fn last_status(&self) -> Status {
        self.published
            .borrow()
            .statuses
            .last()
            .cloned()
            .expect("no status written")
    }
    fn notices(&self) -> Vec<(Duration, Notice)> {
        self.published.borrow().notices.clone()
    }
    /// Notices other than STATUS= lines.
    fn signals(&self) -> Vec<(Duration, Notice)> {
        self.notices()
            .into_iter()
            .filter(|(_, n)| !matches!(n, Notice::Status(_)))
            .collect()
    }
}

struct Setup {
    engine: FakeEngine,
    script: Vec<(Duration, Event)>,
    cfg: LoopConfig,
}

impl Setup {
    fn new(dir_loads: Vec<LoadOutcome>) -> Setup {
        Setup {
            engine: FakeEngine {
                clock: Clock::new(),
                log: Rc::default(),
                dir_loads: dir_loads.into(),
                last_good: LoadOutcome::Invalid {
                    diagnostics: vec![Diagnostic::file_error("last-good", "does not exist")],
                },
                reconciles: VecDeque::new(),
                reconcile_default: Ok(in_sync()),
                kernel_has_state: true,
                interfaces: VecDeque::new(),
                reconcile_time: Duration::ZERO,
                read_time: None,
                script: Rc::default(),
                reads_started: 0,
            },
            script: Vec::new(),
            cfg: LoopConfig::default(),
        }
    }

    fn at(mut self, t: Duration, e: Event) -> Setup {
        self.script.push((t, e));
        self
    }

    fn run(self) -> Run {
        let clock = self.engine.clock.clone();
        let engine_log = self.engine.log.clone();
        let published = Rc::new(RefCell::new(Published::default()));
        let deadlines = Rc::new(RefCell::new(Vec::new()));
        let script = self.engine.script.clone();
        {
            let mut queue = script.borrow_mut();
            queue.extend(self.script);
            queue.make_contiguous().sort_by_key(|(t, _)| *t);
        }
        let waiter = FakeWaiter {
            clock: clock.clone(),
            script,
            deadlines: deadlines.clone(),
        };
        let publisher = FakePublisher {
            clock,
            out: published.clone(),
            engine: engine_log.clone(),
        };
        let exit = Daemon::new(self.engine, waiter, publisher, self.cfg, "host-a").run();
        Run {
            exit,
            engine: engine_log,
            published,
            deadlines,
        }
    }
}

#[test]
fn start_applies_saves_last_good_then_ready() {
    let mut setup = Setup::new(vec![valid_quiet("aaaa")]);
    setup.engine.reconciles.push_back(Ok(wrote(12)));
    let run = setup.at(10 * SEC, Event::Stop).run();
    assert_eq!(run.exit, Exit::Stopped);
    let calls: Vec<_> = run.engine.borrow().calls.iter().map(|c| c.1).collect();
    assert_eq!(calls, vec!["load", "reconcile", "save-last-good"]);
    let status = run.last_status();
    assert_eq!(status.state, State::Ok);
    assert_eq!(status.node, "host-a");
    assert_eq!(status.backend.as_deref(), Some("legacy"));
    let policy = status.policy.unwrap();
    assert_eq!(
        (policy.generation, policy.source_hash.as_str()),
        (1, "aaaa")
    );
    assert_eq!(status.last_apply.unwrap().chains_written, 12);
    assert_eq!(status.policies, vec!["allow-ssh".to_string()]);
    assert_eq!(status.drift_repairs, 0);
    assert_eq!(
        run.signals(),
        vec![
            (Duration::ZERO, Notice::Ready),
            (10 * SEC, Notice::Stopping)
        ]
    );
}

#[test]
fn a_new_generation_is_saved_as_last_good_before_it_is_published() {
    // status.json showing a generation promises that a reboot without the source (etcd down,
    // directory broken) comes back with it.
    let mut setup = Setup::new(vec![valid_quiet("aaaa")]);
    setup.engine.reconciles.push_back(Ok(wrote(12)));
    let run = setup.at(10 * SEC, Event::Stop).run();
    let log = run.engine.borrow();
    let after_reconcile: Vec<_> = log
        .sequence
        .iter()
        .skip_while(|c| **c != "reconcile")
        .take(3)
        .copied()
        .collect();
    assert_eq!(
        after_reconcile,
        vec!["reconcile", "save-last-good", "status"]
    );
}

#[test]
fn stop_leaves_kernel_alone_and_exits_cleanly() {
    let run = Setup::new(vec![valid_quiet("aaaa")])
        .at(SEC, Event::Stop)
        .run();
    assert_eq!(run.exit, Exit::Stopped);
    // Nothing after the first apply: no flush, no extra reconcile.
    assert_eq!(run.engine.borrow().count("reconcile"), 1);
    assert_eq!(run.signals().last().unwrap().1, Notice::Stopping);
}

#[test]
fn debounce_coalesces_a_burst_into_one_reload() {
    let run = Setup::new(vec![valid_quiet("aaaa"), valid_quiet("bbbb")])
        .at(10 * SEC, Event::PolicyChanged { settled: true })
        .at(10 * SEC + 20 * MS, Event::PolicyChanged { settled: true })
        .at(10 * SEC + 40 * MS, Event::PolicyChanged { settled: true })
        .at(10 * SEC + 60 * MS, Event::PolicyChanged { settled: true })
        .at(20 * SEC, Event::Stop)
        .run();
    let log = run.engine.borrow();
    // One load at start, one 25 ms after the last event of the burst.
    assert_eq!(log.times("load"), vec![Duration::ZERO, 10 * SEC + 85 * MS]);
    assert_eq!(log.count("reconcile"), 2);
    assert_eq!(run.last_status().policy.unwrap().generation, 2);
}

#[test]
fn a_finished_write_reloads_after_the_short_quiet() {
    let run = Setup::new(vec![valid_quiet("aaaa"), valid_quiet("bbbb")])
        // Created (still being written), then closed 10 ms later.
        .at(10 * SEC, Event::PolicyChanged { settled: false })
        .at(10 * SEC + 10 * MS, Event::PolicyChanged { settled: true })
        .at(20 * SEC, Event::Stop)
        .run();
    assert_eq!(
        run.engine.borrow().times("load"),
        vec![Duration::ZERO, 10 * SEC + 35 * MS]
    );
}

#[test]
fn a_file_still_being_written_is_read_once_closed_however_long_that_takes() {
    let run = Setup::new(vec![valid_quiet("aaaa"), valid_quiet("bbbb")])
        // Created at 10 s, closed 3 s later: past debounce_max, within writer_wait. Nothing is
        // read in between; the close is read at once (the burst's debounce_max is long over).
        .at(10 * SEC, Event::PolicyChanged { settled: false })
        .at(13 * SEC, Event::PolicyChanged { settled: true })
        .at(20 * SEC, Event::Stop)
        .run();
    assert_eq!(
        run.engine.borrow().times("load"),
        vec![Duration::ZERO, 13 * SEC]
    );
}

#[test]
fn a_writer_that_never_closes_is_read_after_writer_wait() {
    let run = Setup::new(vec![valid_quiet("aaaa"), valid_quiet("bbbb")])
        .at(10 * SEC, Event::PolicyChanged { settled: false })
        .at(20 * SEC, Event::Stop)
        .run();
    assert_eq!(
        run.engine.borrow().times("load"),
        vec![Duration::ZERO, 15 * SEC]
    );
}

#[test]
fn sighup_reloads_at_once_with_reloading_and_ready() {
    let run = Setup::new(vec![valid_quiet("aaaa"), valid_quiet("bbbb")])
        .at(10 * SEC, Event::Reload)
        .at(20 * SEC, Event::Stop)
        .run();
    assert_eq!(
        run.engine.borrow().times("load"),
        vec![Duration::ZERO, 10 * SEC]
    );
    assert_eq!(
        run.signals(),
        vec![
            (Duration::ZERO, Notice::Ready),
            (10 * SEC, Notice::Reloading),
            (10 * SEC, Notice::Ready),
            (20 * SEC, Notice::Stopping),
        ]
    );
    // systemd/hostfw-reload waits for this counter, published after the reload's apply.
    let last = run.last_status();
    assert_eq!(last.reloads, 1);
    assert_eq!(last.policy.map(|p| p.generation), Some(2));
}

#[test]
fn sighup_cancels_a_pending_debounced_reload() {
    let run = Setup::new(vec![valid_quiet("aaaa"), valid_quiet("bbbb")])
        .at(10 * SEC, Event::PolicyChanged { settled: false })
        .at(10 * SEC + 20 * MS, Event::Reload)
        .at(20 * SEC, Event::Stop)
        .run();
    // The SIGHUP reload read the change already; the debounce must not load a third time
    // (the fake would panic on an unscripted load).
    assert_eq!(run.engine.borrow().count("load"), 2);
}

#[test]
fn invalid_change_keeps_last_good_and_records_diagnostics() {
    let run = Setup::new(vec![
        valid_quiet("aaaa"),
        invalid("10-web.yaml"),
        valid_quiet("cccc"),
    ])
    .at(10 * SEC, Event::PolicyChanged { settled: true })
    .at(15 * SEC, Event::Stop)
    .run();
    let statuses = run.published.borrow().statuses.clone();
    // After the invalid load: degraded, the diagnostic recorded, generation 1 still in force,
    // and no reconcile was attempted for it.
    let degraded = statuses
        .iter()
        .find(|s| s.state == State::Degraded)
        .expect("a degraded status");
    assert_eq!(
        degraded.diagnostics,
        vec![error("10-web.yaml", "unknown action \"Alow\"")]
    );
    assert_eq!(degraded.policy.as_ref().unwrap().source_hash, "aaaa");
    assert_eq!(run.engine.borrow().count("reconcile"), 1);
    assert_eq!(run.engine.borrow().count("save-last-good"), 1);
    let last = run.last_status();
    assert_eq!(last.state, State::Degraded);
}

#[test]
fn invalid_change_is_retried_on_the_next_change() {
    let run = Setup::new(vec![
        valid_quiet("aaaa"),
        invalid("10-web.yaml"),
        valid_quiet("cccc"),
    ])
    .at(10 * SEC, Event::PolicyChanged { settled: true })
    .at(12 * SEC, Event::PolicyChanged { settled: true })
    .at(15 * SEC, Event::Stop)
    .run();
    let last = run.last_status();
    assert_eq!(last.state, State::Ok);
    assert!(last.diagnostics.is_empty());
    let policy = last.policy.unwrap();
    assert_eq!(
        (policy.generation, policy.source_hash.as_str()),
        (2, "cccc")
    );
    assert_eq!(run.engine.borrow().count("save-last-good"), 2);
}

#[test]
fn unchanged_reload_verifies_without_new_generation() {
    let run = Setup::new(vec![valid_quiet("aaaa"), valid_quiet("aaaa")])
        .at(10 * SEC, Event::Reload)
        .at(20 * SEC, Event::Stop)
        .run();
    assert_eq!(run.engine.borrow().count("reconcile"), 2);
    assert_eq!(run.engine.borrow().count("save-last-good"), 1);
    assert_eq!(run.last_status().policy.unwrap().generation, 1);
}

#[test]
fn rejection_keeps_rules_only_once_some_are_in_force() {
    assert_eq!(
        rejection(2, true),
        "policy set is invalid (2 error(s)); keeping the rules in force"
    );
    // At boot nothing has been applied: no claim about rules in force.
    assert_eq!(
        rejection(1, false),
        "policy set is invalid (1 error(s)); nothing of it is applied"
    );
}

#[test]
fn sighup_rereads_the_kernel_valid_or_not() {
    // Start (planned from nothing cached: not a re-read), SIGHUP with the same set, SIGHUP with
    // an invalid directory: both SIGHUPs reconcile against a fresh read of the kernel.
    let run = Setup::new(vec![
        valid_quiet("aaaa"),
        valid_quiet("aaaa"),
        invalid("10-web.yaml"),
    ])
    .at(10 * SEC, Event::Reload)
    .at(20 * SEC, Event::Reload)
    .at(30 * SEC, Event::Stop)
    .run();
    assert_eq!(
        run.engine.borrow().reads,
        vec![Read::Cached, Read::Fresh, Read::Fresh]
    );
    assert_eq!(run.last_status().policy.unwrap().generation, 1);
}

#[test]
fn refresh_timer_rereads_and_counts_repairs() {
    let mut setup = Setup::new(vec![valid("aaaa", 90 * SEC, Duration::ZERO)]);
    // Start: in sync. First refresh finds drift and repairs it; second finds nothing.
    setup
        .engine
        .reconciles
        .extend([Ok(in_sync()), Ok(wrote(1)), Ok(in_sync())]);
    let run = setup.at(200 * SEC, Event::Stop).run();
    assert_eq!(
        run.engine.borrow().times("reconcile"),
        vec![Duration::ZERO, 90 * SEC, 180 * SEC]
    );
    let status = run.last_status();
    assert_eq!(status.drift_repairs, 1);
    assert!(status.last_repair.is_some());
    assert_eq!(status.state, State::Ok);
}

#[test]
fn post_write_checks_at_growing_intervals() {
    let mut setup = Setup::new(vec![valid("aaaa", Duration::ZERO, 5 * SEC)]);
    setup.engine.reconciles.push_back(Ok(wrote(3)));
    let run = setup.at(100 * SEC, Event::Stop).run();
    assert_eq!(
        run.engine.borrow().times("reconcile"),
        vec![
            Duration::ZERO,
            5 * SEC,
            10 * SEC,
            20 * SEC,
            40 * SEC,
            80 * SEC
        ]
    );
    assert_eq!(run.last_status().drift_repairs, 0);
}

#[test]
fn repair_during_post_write_check_restarts_the_schedule() {
    let mut setup = Setup::new(vec![valid("aaaa", Duration::ZERO, 5 * SEC)]);
    setup.engine.reconciles.extend([Ok(wrote(3)), Ok(wrote(1))]);
    let run = setup.at(30 * SEC, Event::Stop).run();
    // Write at 0, check at 5 repairs (a write): next checks 5 and 10 s after that repair.
    assert_eq!(
        run.engine.borrow().times("reconcile"),
        vec![Duration::ZERO, 5 * SEC, 10 * SEC, 15 * SEC, 25 * SEC]
    );
    assert_eq!(run.last_status().drift_repairs, 1);
}

#[test]
fn a_check_slower_than_the_next_interval_does_not_start_another_at_once() {
    let mut setup = Setup::new(vec![valid("aaaa", Duration::ZERO, SEC)]);
    setup.engine.reconcile_time = 10 * SEC;
    setup.engine.reconciles.push_back(Ok(wrote(3)));
    let run = setup.at(60 * SEC, Event::Stop).run();
    // Written at 10 s (the apply took 10 s); the check 1 s later runs until 21 s, past the
    // checks due at 12, 14 and 18 s: the next is at 26 s (10 + 16), then 42 s.
    assert_eq!(
        run.engine.borrow().times("reconcile"),
        vec![Duration::ZERO, 11 * SEC, 26 * SEC, 42 * SEC]
    );
}

#[test]
fn an_edit_during_a_slow_check_is_loaded_before_the_next_check() {
    let mut setup = Setup::new(vec![
        valid("aaaa", Duration::ZERO, SEC),
        valid("bbbb", Duration::ZERO, SEC),
    ]);
    setup.engine.reconcile_time = 10 * SEC;
    setup.engine.reconciles.push_back(Ok(wrote(3)));
    let run = setup
        .at(12 * SEC, Event::PolicyChanged { settled: true })
        .at(120 * SEC, Event::Stop)
        .run();
    let log = run.engine.borrow();
    // The check from 11 to 21 s is not cut short, but the edit is loaded as soon as it ends
    // and settles, before any check that came due meanwhile.
    let loads = log.times("load");
    assert_eq!(loads, vec![Duration::ZERO, 21 * SEC + 25 * MS]);
    assert_eq!(
        log.times("reconcile")[..3],
        [Duration::ZERO, 11 * SEC, 21 * SEC + 25 * MS]
    );
}

#[test]
fn idle_without_timers_waits_without_deadline() {
    let run = Setup::new(vec![valid_quiet("aaaa")])
        .at(3600 * SEC, Event::Stop)
        .run();
    // One wait for the whole hour, with no deadline: no wake-ups at all.
    assert_eq!(*run.deadlines.borrow(), vec![None]);
}

#[test]
fn watchdog_pings_at_its_period_only() {
    let mut setup = Setup::new(vec![valid_quiet("aaaa")]);
    setup.cfg.watchdog = Some(15 * SEC);
    let run = setup.at(50 * SEC, Event::Stop).run();
    let pings: Vec<_> = run
        .notices()
        .into_iter()
        .filter(|(_, n)| *n == Notice::Watchdog)
        .map(|(t, _)| t)
        .collect();
    assert_eq!(pings, vec![15 * SEC, 30 * SEC, 45 * SEC]);
    assert_eq!(run.engine.borrow().count("reconcile"), 1);
}

#[test]
fn interface_change_reapplies_without_counting_a_repair() {
    let mut setup = Setup::new(vec![valid_quiet("aaaa")]);
    setup.engine.interfaces.push_back(true);
    setup
        .engine
        .reconciles
        .extend([Ok(in_sync()), Ok(wrote(2))]);
    let run = setup
        .at(10 * SEC, Event::InterfacesChanged)
        .at(10 * SEC + 50 * MS, Event::InterfacesChanged)
        .at(20 * SEC, Event::Stop)
        .run();
    assert_eq!(
        run.engine.borrow().times("reconcile"),
        vec![Duration::ZERO, 10 * SEC + 150 * MS]
    );
    let status = run.last_status();
    assert_eq!(status.drift_repairs, 0);
    assert_eq!(status.last_apply.unwrap().chains_written, 2);
    assert_eq!(status.policy.unwrap().generation, 1);
}

#[test]
fn unrelated_netlink_noise_does_not_touch_the_kernel() {
    let run = Setup::new(vec![valid_quiet("aaaa")])
        .at(10 * SEC, Event::InterfacesChanged)
        .at(20 * SEC, Event::Stop)
        .run();
    assert_eq!(run.engine.borrow().count("reconcile"), 1);
}

#[test]
fn transient_failure_is_retried_with_backoff() {
    let mut setup = Setup::new(vec![valid_quiet("aaaa")]);
    setup.engine.reconciles.extend([
        Err("iptables-restore: line 3 failed".to_string()),
        Err("iptables-restore: line 3 failed".to_string()),
        Ok(wrote(4)),
    ]);
    let run = setup.at(60 * SEC, Event::Stop).run();
    assert_eq!(run.exit, Exit::Stopped);
    // Delays 1 s then 2 s.
    assert_eq!(
        run.engine.borrow().times("reconcile"),
        vec![Duration::ZERO, SEC, 3 * SEC]
    );
    // READY only once the first apply succeeded.
    assert_eq!(run.signals()[0], (3 * SEC, Notice::Ready));
    let statuses = run.published.borrow().statuses.clone();
    assert!(statuses.iter().any(|s| s.state == State::Failed
        && s.last_error.as_deref() == Some("iptables-restore: line 3 failed")));
    let last = run.last_status();
    assert_eq!(last.state, State::Ok);
    assert_eq!(last.last_error, None);
}

#[test]
fn persistent_failure_exits_non_zero() {
    let mut setup = Setup::new(vec![valid_quiet("aaaa")]);
    setup.cfg.retry_attempts = 3;
    setup.engine.reconcile_default = Err("iptables-restore: permission denied".into());
    let run = setup.at(3600 * SEC, Event::Stop).run();
    let Exit::Failed(msg) = &run.exit else {
        panic!("expected failure, got {:?}", run.exit);
    };
    assert!(msg.contains("permission denied"), "{msg}");
    // First try, then retries after 1, 2 and 4 s; the fourth failure ends it.
    assert_eq!(
        run.engine.borrow().times("reconcile"),
        vec![Duration::ZERO, SEC, 3 * SEC, 7 * SEC]
    );
    assert_eq!(run.last_status().state, State::Failed);
    assert!(!run.signals().iter().any(|(_, n)| *n == Notice::Ready));
    assert_eq!(run.engine.borrow().count("save-last-good"), 0);
}

#[test]
fn failed_drift_check_is_retried_then_recovers() {
    let mut setup = Setup::new(vec![valid("aaaa", 90 * SEC, Duration::ZERO)]);
    setup.engine.reconciles.extend([
        Ok(in_sync()),
        Err("xtables lock busy".to_string()),
        Ok(wrote(1)),
    ]);
    let run = setup.at(95 * SEC, Event::Stop).run();
    assert_eq!(
        run.engine.borrow().times("reconcile"),
        vec![Duration::ZERO, 90 * SEC, 91 * SEC]
    );
    assert_eq!(run.last_status().drift_repairs, 1);
}

#[test]
fn boot_with_invalid_directory_applies_last_good_degraded() {
    let mut setup = Setup::new(vec![invalid("20-db.yaml")]);
    setup.engine.kernel_has_state = false;
    setup.engine.last_good = valid_quiet("9999");
    let run = setup.at(10 * SEC, Event::Stop).run();
    let calls: Vec<_> = run.engine.borrow().calls.iter().map(|c| c.1).collect();
    // The last good set is applied but not saved again over itself.
    assert_eq!(
        calls,
        vec!["load", "kernel-has-state", "load-last-good", "reconcile"]
    );
    let status = run.last_status();
    assert_eq!(status.state, State::Degraded);
    let policy = status.policy.unwrap();
    assert_eq!(policy.origin, PolicyOrigin::LastGood);
    assert_eq!(policy.source_hash, "9999");
    assert_eq!(status.diagnostics.len(), 1);
    assert_eq!(run.signals()[0], (Duration::ZERO, Notice::Ready));
}

#[test]
fn fixing_the_directory_after_a_last_good_boot_returns_to_ok() {
    let mut setup = Setup::new(vec![invalid("20-db.yaml"), valid_quiet("9999")]);
    setup.engine.kernel_has_state = false;
    setup.engine.last_good = valid_quiet("9999");
    let run = setup
        .at(10 * SEC, Event::PolicyChanged { settled: false })
        .at(20 * SEC, Event::Stop)
        .run();
    let status = run.last_status();
    assert_eq!(status.state, State::Ok);
    let policy = status.policy.unwrap();
    // Same files as the last good set, but now from the directory: a new generation.
    assert_eq!(policy.origin, PolicyOrigin::Directory);
    assert_eq!(policy.generation, 2);
    assert_eq!(run.engine.borrow().count("save-last-good"), 1);
}

#[test]
fn invalid_directory_with_kernel_state_leaves_the_kernel() {
    let run = Setup::new(vec![invalid("20-db.yaml")])
        .at(10 * SEC, Event::Stop)
        .run();
    let calls: Vec<_> = run.engine.borrow().calls.iter().map(|c| c.1).collect();
    assert_eq!(calls, vec!["load", "kernel-has-state"]);
    let status = run.last_status();
    assert_eq!(status.state, State::Degraded);
    assert_eq!(status.policy, None);
    assert_eq!(run.signals()[0], (Duration::ZERO, Notice::Ready));
}

#[test]
fn boot_without_any_last_good_set_reports_the_gap() {
    let mut setup = Setup::new(vec![invalid("20-db.yaml")]);
    setup.engine.kernel_has_state = false;
    let run = setup.at(10 * SEC, Event::Stop).run();
    assert_eq!(run.engine.borrow().count("reconcile"), 0);
    let status = run.last_status();
    assert_eq!(status.state, State::Degraded);
    assert!(status
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("no usable last good policy set")));
}

#[test]
fn a_drift_checks_read_runs_in_the_background_and_the_check_plans_from_it() {
    let mut setup = Setup::new(vec![valid("aaaa", Duration::ZERO, 5 * SEC)]);
    setup.engine.read_time = Some(3 * SEC);
    setup.engine.reconciles.push_back(Ok(wrote(3)));
    let run = setup.at(30 * SEC, Event::Stop).run();
    let log = run.engine.borrow();
    // Written at 0: checks due at 5, 10 and 20 s each read for 3 s, then plan from that read.
    assert_eq!(
        log.times("read-in-background"),
        vec![5 * SEC, 10 * SEC, 20 * SEC]
    );
    assert_eq!(
        log.times("reconcile"),
        vec![Duration::ZERO, 8 * SEC, 13 * SEC, 23 * SEC]
    );
    assert_eq!(
        log.reads,
        vec![Read::Cached, Read::Finished, Read::Finished, Read::Finished]
    );
}

#[test]
fn an_edit_during_a_background_read_is_applied_at_once_and_the_read_dropped() {
    let mut setup = Setup::new(vec![
        valid("aaaa", Duration::ZERO, SEC),
        valid("bbbb", Duration::ZERO, SEC),
    ]);
    setup.engine.read_time = Some(10 * SEC);
    setup.engine.reconciles.extend([Ok(wrote(3)), Ok(wrote(2))]);
    let run = setup
        .at(2 * SEC, Event::PolicyChanged { settled: true })
        .at(20 * SEC, Event::Stop)
        .run();
    let log = run.engine.borrow();
    let edit = 2 * SEC + 25 * MS;
    assert_eq!(log.times("load"), vec![Duration::ZERO, edit]);
    // The read begun at 1 s would end at 11 s; the edit does not wait for it, and its end is
    // not taken for the end of the read the edit's own post-write check began (done at 13 s).
    assert_eq!(log.times("read-in-background")[..2], [SEC, edit + SEC]);
    assert_eq!(
        log.times("reconcile"),
        vec![Duration::ZERO, edit, edit + 11 * SEC]
    );
    assert_eq!(log.reads, vec![Read::Cached, Read::Cached, Read::Finished]);
    assert_eq!(run.last_status().policy.unwrap().generation, 2);
}

#[test]
fn no_check_starts_while_a_background_read_runs() {
    let mut setup = Setup::new(vec![valid("aaaa", 2 * SEC, Duration::ZERO)]);
    setup.engine.read_time = Some(5 * SEC);
    let run = setup.at(15 * SEC, Event::Stop).run();
    let log = run.engine.borrow();
    // Refresh every 2 s, counted from the last reconcile: a 5 s read is not overlapped by
    // another, and the loop sleeps through it (the fake waiter fails a loop that spins).
    assert_eq!(log.times("read-in-background"), vec![2 * SEC, 9 * SEC]);
    assert_eq!(
        log.times("reconcile"),
        vec![Duration::ZERO, 7 * SEC, 14 * SEC]
    );
    let waits = run.deadlines.borrow();
    assert!(waits.len() < 20, "{} waits: {waits:?}", waits.len());
}
