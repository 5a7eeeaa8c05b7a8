//! The real `Engine`: the policy source -> validated set -> `desired::compute` for this node
//! (with the host's interfaces and, for a new set, the lockout guard) -> `sync::reconcile`
//! through the real dataplane. Holds the desired state between calls; keeps the last one when
//! a new load is invalid. Between reconciles it keeps the validated set, not its rendered
//! rules: those are the largest thing the daemon holds, and rendering them again from the set
//! when a drift check needs them costs a fraction of the kernel read that check does anyway,
//! and a check whose read holds what the last in-sync reconcile found renders nothing
//! (`sync::LiveCache::quiet_check`).
//! A drift check's read of the kernel runs on a helper thread (`read_in_background`), so the
//! loop is free for an edit while it runs; an edit's reconcile makes that read moot.

use super::last_good::{self, PolicyFile};
use super::{ApplyReport, Engine, EngineError, Event, Intervals, LoadOutcome, PolicySource, Read};
use crate::dataplane::{Dataplane, RealDataplane};
use crate::desired::{self, Desired, Families, Options};
use crate::diag::Diagnostic;
use crate::finding::{Finding, FindingKind};
use crate::guard;
use crate::metrics::{Exporter, KernelCounters, Metered};
use crate::model::{BackendChoice, PolicySet};
use crate::policy::LoadCache;
use crate::render::RenderMemo;
use crate::resolve::HostInterfaces;
use crate::ruleset::{Family, Ruleset};
use crate::settings::Settings;
use crate::source::{directory::Directory, Source};
use crate::sync::{self, Fresh, SyncError, SyncOptions};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Instant, SystemTime};

/// A validated policy set in force: what it was loaded from and what it means on this host.
struct InForce {
    /// The texts to save as the last good set; taken when they are saved (once per load).
    files: Vec<PolicyFile>,
    set: PolicySet,
    /// The interfaces `enforced` was computed against.
    interfaces: HostInterfaces,
    enforced: Enforced,
    /// The rendered rules, from a load (or an interface change) until the reconcile that puts
    /// them in the kernel; a later reconcile renders them again from `set`.
    rulesets: Option<Vec<Ruleset>>,
}

/// The part of a `Desired` the daemon keeps between loads (the node view is dropped: it
/// copies the policies it uses, and `set` can produce it again).
#[derive(PartialEq)]
struct Enforced {
    /// A keyed digest of the rendered rules: tells whether an interface change changes them
    /// without keeping the old ones to compare against.
    digest: u64,
    backend: BackendChoice,
    intervals: Intervals,
    /// GlobalNetworkPolicies in force here.
    policies: Vec<String>,
    /// Resolution warnings (e.g. an endpoint with no ingress policy).
    warnings: Vec<Finding>,
}

impl Enforced {
    /// What to keep of `desired`, and its rulesets apart (`key` keys the digest).
    fn new(desired: Desired, key: &RandomState) -> (Enforced, Vec<Ruleset>) {
        let config = desired.config();
        // One digest per family, side by side: it takes the fingerprint of every rule body not
        // fingerprinted before (the plan then reuses them; `ruleset::Rules`).
        let digests = crate::parallel::map(&desired.rulesets, |r| key.hash_one(r));
        let enforced = Enforced {
            digest: key.hash_one(&digests),
            backend: config.iptables_backend,
            intervals: Intervals {
                refresh: config.iptables_refresh_interval,
                post_write: config.iptables_post_write_check_interval,
            },
            policies: desired.view.policies.keys().cloned().collect(),
            warnings: desired
                .findings
                .into_iter()
                .filter(|f| f.kind == FindingKind::Warning)
                .collect(),
        };
        (enforced, desired.rulesets)
    }

    fn log_warnings(&self) {
        for w in &self.warnings {
            log::warn!("{}", w.message);
        }
    }
}

/// Production engine for `hostfw run`.
pub struct RealEngine {
    settings: Settings,
    /// Where policies come from (the directory, or another store).
    source: Box<dyn Source>,
    /// The saved last good set.
    last_good: Directory,
    /// What the last load found in each file: an edit parses and validates only the files
    /// it changed.
    loads: LoadCache,
    in_force: Option<InForce>,
    dataplane: Option<Metered<RealDataplane>>,
    sync: SyncOptions,
    /// What the last read or write left in the kernel; lets a policy edit skip the first read.
    live: sync::LiveCache,
    /// Metrics, health endpoints and log level, following the set in force.
    exporter: Exporter,
    /// The endpoint and policy chains the last render built: an edit of one policy rebuilds
    /// that policy's chains only.
    render_memo: RenderMemo,
    /// Keys `Enforced::digest`, drawn once per process so nobody outside it can aim a changed
    /// ruleset at a colliding digest.
    digest_key: RandomState,
    /// Where a helper thread announces a finished read (`read_in_background`); None: drift
    /// checks read inside `reconcile`.
    events: Option<mpsc::Sender<Event>>,
    /// The read `read_in_background` started; taken by the next reconcile, whichever it is, so
    /// no read outlives a reconcile that ran after it began.
    reading: Option<BackgroundRead>,
    /// Reads started so far (each announces its number).
    reads: u64,
}

/// A drift check's read of the kernel on a helper thread.
struct BackgroundRead {
    /// Its outcome, sent once when it is done.
    outcome: mpsc::Receiver<Result<Fresh, SyncError>>,
    /// Calls it off: its save tools are killed, and it ends with an error nobody reads.
    abandon: Arc<AtomicBool>,
}

impl BackgroundRead {
    /// Its outcome if it is done; otherwise it is called off.
    fn finish(self) -> Option<Result<Fresh, SyncError>> {
        let done = self.outcome.try_recv().ok();
        if done.is_none() {
            self.abandon.store(true, Ordering::SeqCst);
        }
        done
    }
}

/// Tells the loop a helper thread's read (by number) is over, however it ended (a panic
/// included), so the loop never waits for a check that will not come.
struct Announce(mpsc::Sender<Event>, u64);

impl Drop for Announce {
    fn drop(&mut self) {
        // The loop is gone only when the daemon is stopping.
        let _ = self.0.send(Event::KernelRead { read: self.1 });
    }
}

impl RealEngine {
    pub fn new(settings: Settings, source: Box<dyn Source>) -> RealEngine {
        RealEngine {
            last_good: Directory::new(settings.last_good_dir()),
            loads: LoadCache::default(),
            settings,
            source,
            in_force: None,
            dataplane: None,
            live: sync::LiveCache::packing(),
            exporter: Exporter::new(),
            render_memo: RenderMemo::default(),
            digest_key: RandomState::new(),
            events: None,
            reading: None,
            reads: 0,
            // The loop retries with its own, longer backoff; keep each reconcile short.
            sync: SyncOptions {
                max_attempts: 3,
                ..SyncOptions::default()
            },
        }
    }

    /// Read the kernel for drift checks on a helper thread, announcing each finished read on
    /// `events` (`hostfw run`; without it, e.g. in the benchmarks, checks read in `reconcile`).
    pub fn reading_in_background(mut self, events: mpsc::Sender<Event>) -> RealEngine {
        self.events = Some(events);
        self
    }

    /// Create the dataplane on first use, with the configured or detected backend.
    fn ensure_dataplane(&mut self) -> Result<&Metered<RealDataplane>, EngineError> {
        // Backend from the command line or environment, else from the policy set in force.
        let felix = self.in_force.as_ref().map(|f| f.enforced.backend);
        let wanted = self.settings.dataplane_backend(felix);
        match (&self.dataplane, wanted) {
            (Some(dp), Some(w)) if dp.backend() != w => log::warn!(
                "iptables backend {w} configured, but the daemon runs with {}: restart hostfw to switch (and `hostfw flush` the old one)",
                dp.backend()
            ),
            (Some(_), _) => {}
            (None, _) => {
                let dp = RealDataplane::detect(wanted)?;
                log::info!("iptables backend: {}", dp.backend());
                let metrics = self.exporter.metrics();
                metrics.set_counter_reader(Some(Box::new(KernelCounters::new(dp.clone()))));
                self.dataplane = Some(Metered::new(dp, metrics.clone()));
            }
        }
        self.dataplane
            .as_ref()
            .ok_or_else(|| EngineError::from("no dataplane"))
    }
}

/// The rules of `set` on a host with `interfaces`, as a load rendered them (no guard: it
/// judged the set when it was loaded).
fn render(
    set: &PolicySet,
    node: &str,
    interfaces: &HostInterfaces,
    memo: &RenderMemo,
) -> Result<Desired, desired::Unrenderable> {
    let options = Options {
        families: Families::Enabled,
        guard: None,
    };
    desired::compute_remembering(set, node, interfaces, options, memo)
}

/// The mark bits the rules of `desired` set (per-policy counters read them back).
fn marks(desired: &Desired) -> Option<crate::render::marks::Marks> {
    crate::render::marks::Marks::allocate(desired.config().iptables_mark_mask).ok()
}

/// Hand freed heap back to the kernel. Loading and reconciling a large policy set allocate
/// hundreds of megabytes that are free again afterwards, but glibc keeps freed memory in the
/// process; without this the idle daemon would stay at its peak size.
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap under its own locks; no Rust invariant is
    // involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Set glibc's allocator for a long-lived process whose big buffers come and go, before any
/// helper thread starts; a variable set in the environment (`MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_`) wins over each setting. The figures are in docs/performance.md
/// ("Two malloc arenas", "Big blocks always mapped on their own").
///
/// - At most two arenas. glibc gives threads that allocate at the same time arenas of their
///   own, up to eight per core, and memory freed in one cannot serve another: the daemon's
///   renders, reads and frees run on changing helper threads, so each arena grew to the largest
///   thing any of them ever held (at 1,000 policies the peak over an edit and its checks fell
///   from 185 to 120-124 MB).
/// - Blocks of 1 MiB and more always mapped on their own. By default glibc raises that
///   threshold to the size of each mapped block freed (up to 32 MiB), so after the first drift
///   check a check's save texts and rule vectors came from the heap, and the long-lived state
///   allocated between them kept those pages from being handed back (at 1,000 policies the
///   idle size after checks fell from 91-97 to 69-71 MB, the reaction unchanged).
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, parameter, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 1 << 20),
    ] {
        // SAFETY: mallopt only sets a glibc allocator parameter; called before other threads.
        if std::env::var_os(variable).is_none() && unsafe { libc::mallopt(parameter, value) } != 1 {
            log::debug!("cannot set the allocator's {variable}");
        }
    }
}

/// Run the calling thread, and the threads and child processes it starts, at the lowest CPU
/// priority: a drift check's read is housekeeping, and on a small machine an edit arriving
/// while it runs would otherwise share the CPU with it (at 10,000 policies the read's save
/// tools and parse take seconds). On Linux the nice value is the thread's own, and a new thread
/// or child inherits its creator's; lowering it needs no privilege.
fn yield_to_edits() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes the scheduling weight of the calling thread (`gettid`).
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 19) != 0 {
            log::debug!(
                "cannot lower the priority of the kernel read: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Free `value` (the rules a reconcile wrote, the set a load replaced) on a helper thread and
/// then hand the pages back: at 1,000 policies freeing the written rules takes ~25 ms that the
/// edit's status (and the next event) need not wait for. Freed at once when no thread can be
/// started.
fn free_later(value: impl Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("hostfw-free".into())
        .spawn(move || {
            drop(value);
            release_memory();
        });
    if let Err(e) = spawned {
        log::debug!("freeing on this thread: {e}");
    }
}

/// The host's interfaces; an unreadable list resolves as "no interfaces" (named endpoints are
/// programmed regardless; `*` and expectedIPs-only ones wait for the next change).
fn read_interfaces() -> HostInterfaces {
    crate::host::interfaces().unwrap_or_else(|e| {
        log::warn!("cannot list network interfaces: {e}");
        HostInterfaces::new()
    })
}

impl Engine for RealEngine {
    fn load(&mut self, from: PolicySource) -> LoadOutcome {
        let source: &dyn Source = match from {
            PolicySource::Directory => self.source.as_ref(),
            PolicySource::LastGood => &self.last_good,
        };
        let origin = source.describe();
        // Read once, then validate and hash the very same bytes (a second read could see a
        // different file).
        let started = std::time::Instant::now();
        // The guard judges a new set from the directory (the last good set is a fallback that
        // was judged when it was new); its socket listings are read while the set loads.
        let sockets = (from == PolicySource::Directory).then(crate::sshd::SocketTables::start);
        let mut snapshot = source.read();
        let checked = self.loads.load_snapshot(&snapshot);
        let validated = started.elapsed();
        let mut diagnostics = checked.loaded.diagnostics;
        let metrics = self.exporter.metrics().clone();
        let directory = from == PolicySource::Directory;
        let Some(set) = checked.loaded.set else {
            release_memory();
            metrics.loaded(directory, None, &diagnostics);
            return LoadOutcome::Invalid { diagnostics };
        };
        // Compressed before the render: at 10,000 policies the texts are 16 MB, and the render
        // is when an edit's memory peaks.
        let files: Vec<PolicyFile> = std::mem::take(&mut snapshot.texts)
            .into_iter()
            .map(|t| PolicyFile::new(source.saved_name(&t.name), &t.text))
            .collect();
        let interfaces = read_interfaces();
        let sessions = sockets.map(|tables| guard::observe(&interfaces, tables));
        let options = Options {
            families: Families::Enabled,
            guard: sessions.as_ref(),
        };
        let computing = std::time::Instant::now();
        let desired = match desired::compute_remembering(
            &set,
            &self.settings.node,
            &interfaces,
            options,
            &self.render_memo,
        ) {
            Ok(d) => d,
            Err(e) => {
                diagnostics.push(Diagnostic::file_error(origin, e.to_string()));
                metrics.loaded(directory, None, &diagnostics);
                return LoadOutcome::Invalid { diagnostics };
            }
        };
        if from == PolicySource::Directory {
            metrics.guarded(&desired.findings);
            let refused =
                guard::daemon_gate(&desired.findings, self.settings.lockout_guard, &origin);
            if !refused.is_empty()
                && crate::confirm::was_confirmed(&self.settings.run_dir, &snapshot.revision)
            {
                log::warn!(
                    "lockout guard: applying a set `hostfw confirm` kept despite its findings"
                );
            } else if !refused.is_empty() {
                diagnostics.extend(refused);
                metrics.loaded(directory, None, &diagnostics);
                return LoadOutcome::Invalid { diagnostics };
            }
            // A valid edit (or SIGHUP, or start) is the admin's answer to a rolled-back
            // `apply --confirm`: the daemon may enforce the directory again.
            if let Err(e) = crate::confirm::resume_after_edit(&self.settings.run_dir) {
                log::warn!("{e}");
            }
        }
        metrics.loaded(directory, Some((&set, &snapshot.revision)), &diagnostics);
        metrics.rendered(&desired.view, &desired.rulesets, marks(&desired));
        self.exporter.configure(desired.config());
        let computed = computing.elapsed();
        let (enforced, rulesets) = Enforced::new(desired, &self.digest_key);
        enforced.log_warnings();
        log::debug!(
            "loaded: read and validated in {} ms, resolved and rendered in {} ms, all in {} ms",
            validated.as_millis(),
            computed.as_millis(),
            started.elapsed().as_millis()
        );
        let intervals = enforced.intervals;
        // The set it replaces (10,000 policies' rules and selectors at the largest) is freed
        // off the loop's thread, as written rules are.
        let replaced = self.in_force.replace(InForce {
            files,
            set,
            interfaces,
            enforced,
            rulesets: Some(rulesets),
        });
        free_later(replaced);
        LoadOutcome::Valid {
            source_hash: snapshot.revision,
            diagnostics,
            intervals,
        }
    }

    fn interfaces_changed(&mut self) -> bool {
        let Some(in_force) = &self.in_force else {
            return false;
        };
        let now = read_interfaces();
        if now == in_force.interfaces {
            return false;
        }
        match render(&in_force.set, &self.settings.node, &now, &self.render_memo) {
            Ok(desired) => {
                self.exporter
                    .metrics()
                    .rendered(&desired.view, &desired.rulesets, marks(&desired));
                let (enforced, rulesets) = Enforced::new(desired, &self.digest_key);
                let changed = enforced != in_force.enforced;
                if changed {
                    self.exporter.metrics().rules_changed();
                    enforced.log_warnings();
                }
                if let Some(f) = &mut self.in_force {
                    f.interfaces = now;
                    f.enforced = enforced;
                    // Unchanged rules are not worth keeping: the next reconcile is a check.
                    f.rulesets = if changed { Some(rulesets) } else { None };
                }
                changed
            }
            Err(e) => {
                log::error!("cannot render for the new interfaces: {e}");
                false
            }
        }
    }

    fn reconcile(&mut self, read: Read) -> Result<ApplyReport, EngineError> {
        // Still running: called off. Done: newer than the cached state (no reconcile ran since
        // it began), so even an edit plans from it.
        let mut finished = self.reading.take().and_then(BackgroundRead::finish);
        // A pending `apply --confirm` (or its rollback) owns the kernel until it is confirmed,
        // rolled back, or the directory is edited: reconciling now would undo it.
        let now = crate::confirm::now_unix();
        if let Some(crate::confirm::Hold::Abandoned(p)) =
            crate::confirm::daemon_hold(&self.settings.run_dir, now)
        {
            // Its watcher died: the rollback it owed is ours.
            log::warn!(
                "{}; rolling back now",
                crate::confirm::Hold::Abandoned(p.clone())
            );
            let _lock = crate::lock::acquire_logged(&self.settings.lock_path())?;
            self.ensure_dataplane()?;
            if let Some(dp) = &self.dataplane {
                match crate::confirm::roll_back(dp, &self.settings.run_dir, &p.token) {
                    Ok(done) => log::warn!("abandoned confirmation: {done:?}"),
                    Err(e) => log::error!("rolling back the abandoned confirmation failed: {e}"),
                }
            }
            // The rollback rewrote the kernel: neither the cache nor a read from before shows it.
            self.live.invalidate();
            finished = None;
        }
        if let Some(hold) = crate::confirm::daemon_hold(&self.settings.run_dir, now) {
            log::warn!("not reconciling: {hold}");
            // The confirmation's watcher may rewrite the kernel meanwhile.
            self.live.invalidate();
            self.exporter.metrics().held();
            return Ok(ApplyReport {
                held: true,
                ..ApplyReport::default()
            });
        }
        // The writer lock only while touching the kernel, so `hostfw diff` and `hostfw apply`
        // can run beside the daemon instead of waiting for it to exit.
        let _lock = crate::lock::acquire_logged(&self.settings.lock_path())?;
        self.ensure_dataplane()?;
        let (Some(dp), Some(in_force)) = (&self.dataplane, &mut self.in_force) else {
            return Err("no policy set loaded".into());
        };
        match (read, finished) {
            (Read::Fresh, _) => self.live.invalidate(),
            (Read::Cached | Read::Finished, Some(Ok(fresh))) => self.live.start_from(fresh),
            (Read::Finished, Some(Err(e))) => {
                log::warn!("the drift check's read failed ({e}): reading again");
                self.live.invalidate();
            }
            // The read is gone (its thread died): read now.
            (Read::Finished, None) => self.live.invalidate(),
            (Read::Cached, _) => {}
        }
        let started = Instant::now();
        // Nothing new to enforce, and the kernel reads as it did when last found in sync.
        let quiet = in_force
            .rulesets
            .is_none()
            .then(|| self.live.quiet_check(dp.backend()))
            .flatten();
        let report = if let Some(report) = quiet {
            log::debug!("the kernel reads as it did when last in sync: nothing to plan");
            Ok(report)
        } else {
            let rulesets = match in_force.rulesets.take() {
                Some(rulesets) => rulesets,
                None => {
                    render(
                        &in_force.set,
                        &self.settings.node,
                        &in_force.interfaces,
                        &self.render_memo,
                    )
                    .map_err(|e| EngineError::from(format!("cannot render the set in force: {e}")))?
                    .rulesets
                }
            };
            let report = sync::reconcile_cached(&rulesets, dp, &self.sync, &mut self.live);
            if report.is_err() {
                // The loop retries soon: keep them for the retry.
                in_force.rulesets = Some(rulesets);
            } else {
                free_later(rulesets);
            }
            report
        };
        self.exporter.metrics().reconciled(
            report.as_ref().map_err(|_| ()),
            read != Read::Cached,
            started.elapsed(),
            Instant::now(),
            SystemTime::now(),
        );
        release_memory();
        let report = report?;
        if report.hooks_fixed > 0 {
            self.source.hooks_installed();
        }
        let changes = if report.in_sync() {
            Vec::new()
        } else {
            report
                .plan
                .to_string()
                .lines()
                .map(str::to_string)
                .collect()
        };
        Ok(ApplyReport {
            backend: report.backend.to_string(),
            chains_written: report.chains_created + report.chains_rewritten,
            changes,
            policies: in_force.enforced.policies.clone(),
            overtaken: report.overtaken.iter().map(ToString::to_string).collect(),
            held: false,
        })
    }

    fn read_in_background(&mut self) -> Option<u64> {
        let events = self.events.clone()?;
        // Held by a pending `apply --confirm`: `reconcile` says so (or rolls back an abandoned
        // one) without reading anything.
        let now = crate::confirm::now_unix();
        if crate::confirm::daemon_hold(&self.settings.run_dir, now).is_some() {
            return None;
        }
        // Without a dataplane `reconcile` reports why.
        let abandon = Arc::new(AtomicBool::new(false));
        let dp = self
            .ensure_dataplane()
            .ok()?
            .derive(|dp| dp.abandoned_when(abandon.clone()));
        let reader = self.live.reader();
        let (outcome, reading) = mpsc::channel();
        self.reads += 1;
        let number = self.reads;
        // No writer lock: nothing is written, and the plan made from this read later is as
        // safe as one made from the cached state (`sync::LiveCache`).
        let spawned = std::thread::Builder::new()
            .name("hostfw-read".into())
            .spawn(move || {
                let _announce = Announce(events, number);
                yield_to_edits();
                if let Err(overtaken) = outcome.send(reader.read(&dp)) {
                    // A reconcile ran meanwhile: free what was read here, not on the loop's
                    // thread.
                    drop(overtaken);
                    release_memory();
                }
            });
        match spawned {
            Ok(_) => {
                self.reading = Some(BackgroundRead {
                    outcome: reading,
                    abandon,
                });
                Some(number)
            }
            Err(e) => {
                log::debug!("reading the kernel on this thread: {e}");
                None
            }
        }
    }

    fn kernel_has_state(&mut self) -> Result<bool, EngineError> {
        let _lock = crate::lock::acquire_logged(&self.settings.lock_path())?;
        let dp = self.ensure_dataplane()?;
        for family in [Family::V4, Family::V6] {
            if !dp.supports(family) {
                continue;
            }
            let mut saved = crate::ruleset::save::SavedTables::default();
            dp.save_tables(family, &mut |line| saved.line(line, &mut |_, _| {}))?;
            let tables = saved.finish(&mut |_, _| {}).map_err(|(_, e)| e)?;
            if tables
                .values()
                .any(|t| t.chains.keys().any(|c| c.starts_with("cali-")))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn save_last_good(&mut self) -> Result<(), EngineError> {
        let Some(in_force) = &mut self.in_force else {
            return Ok(());
        };
        // Saved once per load; the texts are not needed after that. A second call for the same
        // load finds none, and must not replace the saved set with an empty one.
        if in_force.files.is_empty() {
            return Ok(());
        }
        let files = std::mem::take(&mut in_force.files);
        last_good::save(&self.settings.last_good_dir(), &files)?;
        Ok(())
    }

    fn datastore(&self) -> Option<crate::status::Datastore> {
        self.source.datastore()
    }
}
