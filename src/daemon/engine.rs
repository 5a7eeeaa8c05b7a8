//! The real `Engine`: policy directory -> validated set -> this node's view (with the host's
//! interfaces) -> rendered rulesets -> `sync::reconcile` through the real dataplane. Holds the
//! desired state between calls; keeps the last one when a new load is invalid.

use super::last_good::{self, PolicyFile};
use super::{ApplyReport, Engine, EngineError, Intervals, LoadOutcome, PolicySource};
use crate::dataplane::{Backend, Dataplane, RealDataplane};
use crate::diag::{self, Diagnostic};
use crate::guard;
use crate::metrics::{Exporter, KernelCounters, Metered};
use crate::model::BackendChoice;
use crate::resolve::{self, HostInterfaces, NodeView};
use crate::ruleset::{Family, Ruleset};
use crate::settings::Settings;
use crate::sync::{self, SyncOptions};
use std::path::Path;
use std::time::{Instant, SystemTime};

/// A validated policy set ready to enforce.
struct Desired {
    files: Vec<PolicyFile>,
    set: crate::model::PolicySet,
    /// The interfaces the rulesets were resolved against.
    interfaces: HostInterfaces,
    rendered: Rendered,
}

/// What resolving and rendering produced for this node.
#[derive(PartialEq)]
struct Rendered {
    rulesets: Vec<Ruleset>,
    intervals: Intervals,
    /// GlobalNetworkPolicies in force here.
    policies: Vec<String>,
    /// Resolution warnings (e.g. an endpoint with no ingress policy).
    warnings: Vec<String>,
}

impl Rendered {
    fn log_warnings(&self) {
        for w in &self.warnings {
            log::warn!("{w}");
        }
    }
}

/// Production engine for `hostfw run`.
pub struct RealEngine {
    settings: Settings,
    desired: Option<Desired>,
    dataplane: Option<Metered<RealDataplane>>,
    sync: SyncOptions,
    guard_mode: guard::DaemonMode,
    /// What the last verified write left in the kernel; lets a policy edit skip the first read.
    live: sync::LiveCache,
    /// Metrics, health endpoints and log level, following the set in force.
    exporter: Exporter,
}

impl RealEngine {
    pub fn new(settings: Settings) -> RealEngine {
        RealEngine {
            settings,
            desired: None,
            dataplane: None,
            exporter: Exporter::new(),
            guard_mode: guard::daemon_mode_from_env(),
            live: sync::LiveCache::default(),
            // The loop retries with its own, longer backoff; keep each reconcile short.
            sync: SyncOptions {
                max_attempts: 3,
                ..SyncOptions::default()
            },
        }
    }

    /// Create the dataplane on first use, with the configured or detected backend.
    fn ensure_dataplane(&mut self) -> Result<&Metered<RealDataplane>, EngineError> {
        let wanted = match self.backend_choice() {
            BackendChoice::Auto => None,
            BackendChoice::Legacy => Some(Backend::Legacy),
            BackendChoice::Nft => Some(Backend::Nft),
        };
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

    /// Backend from the command line or environment, else from the policy set in force.
    fn backend_choice(&self) -> BackendChoice {
        self.settings.backend.unwrap_or_else(|| {
            self.desired
                .as_ref()
                .map(|d| {
                    crate::resolve::effective_config(&d.set, &self.settings.node).iptables_backend
                })
                .unwrap_or(BackendChoice::Auto)
        })
    }

    /// Resolve and render `set` for this node against `interfaces`.
    fn render(
        &self,
        set: &crate::model::PolicySet,
        interfaces: &HostInterfaces,
    ) -> Result<(Rendered, NodeView), crate::render::RenderError> {
        let view = resolve::resolve(set, &self.settings.node, interfaces);
        let mut families = vec![Family::V4];
        if view.config.ipv6_support {
            families.push(Family::V6);
        }
        let mut rulesets = Vec::with_capacity(families.len());
        for f in families {
            rulesets.push(crate::render::render(&view, f)?);
        }
        let intervals = Intervals {
            refresh: view.config.iptables_refresh_interval,
            post_write: view.config.iptables_post_write_check_interval,
        };
        let rendered = Rendered {
            rulesets,
            intervals,
            policies: view.policies.keys().cloned().collect(),
            warnings: view.warnings.clone(),
        };
        Ok((rendered, view))
    }

    /// The lockout guard on a new policy set: would it cut off SSH? Findings are logged; in
    /// refuse mode (`HOSTFW_LOCKOUT_GUARD=refuse`) they become errors that reject the set.
    fn guard(
        &self,
        view: &NodeView,
        rendered: &Rendered,
        interfaces: &HostInterfaces,
        dir: &Path,
    ) -> Vec<Diagnostic> {
        let findings = match guard::check_host(view, &rendered.rulesets, interfaces) {
            Ok(f) => f,
            Err(e) => {
                log::warn!("lockout guard could not run: {e}");
                return Vec::new();
            }
        };
        self.exporter.metrics().guarded(&findings);
        let refuse = self.guard_mode == guard::DaemonMode::Refuse;
        findings
            .iter()
            .filter_map(|f| {
                log::warn!("lockout guard: {}", f.message);
                refuse.then(|| {
                    Diagnostic::file_error(
                        dir.display().to_string(),
                        format!("lockout guard (HOSTFW_LOCKOUT_GUARD=refuse): {}", f.message),
                    )
                })
            })
            .collect()
    }
}

/// The mark bits the rules of this view set (per-policy counters read them back).
fn marks(view: &NodeView) -> Option<crate::render::marks::Marks> {
    crate::render::marks::Marks::allocate(view.config.iptables_mark_mask).ok()
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

/// The host's interfaces; an unreadable list resolves as "no interfaces" (named endpoints are
/// programmed regardless; `*` and expectedIPs-only ones wait for the next change).
fn read_interfaces() -> HostInterfaces {
    crate::host::interfaces().unwrap_or_else(|e| {
        log::warn!("cannot list network interfaces: {e}");
        HostInterfaces::new()
    })
}

/// A source's file name (sources are named by path in diagnostics).
fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

impl Engine for RealEngine {
    fn load(&mut self, from: PolicySource) -> LoadOutcome {
        let dir = match from {
            PolicySource::Directory => self.settings.policy_dir.clone(),
            PolicySource::LastGood => self.settings.last_good_dir(),
        };
        // Read once, then validate and hash the very same bytes (a second read could see a
        // different file).
        let (sources, mut diagnostics) = crate::policy::source::read(std::slice::from_ref(&dir));
        let loaded = crate::policy::load_sources(&sources);
        diagnostics.extend(loaded.diagnostics);
        diag::sort(&mut diagnostics);
        let set = match loaded.set {
            Some(set) if !diagnostics.iter().any(Diagnostic::is_error) => set,
            _ => {
                release_memory();
                self.exporter.metrics().loaded(None, &diagnostics);
                return LoadOutcome::Invalid { diagnostics };
            }
        };
        let interfaces = read_interfaces();
        let (rendered, view) = match self.render(&set, &interfaces) {
            Ok(r) => r,
            Err(e) => {
                diagnostics.push(Diagnostic::file_error(
                    dir.display().to_string(),
                    e.to_string(),
                ));
                self.exporter.metrics().loaded(None, &diagnostics);
                return LoadOutcome::Invalid { diagnostics };
            }
        };
        if from == PolicySource::Directory {
            let refused = self.guard(&view, &rendered, &interfaces, &dir);
            if !refused.is_empty() {
                diagnostics.extend(refused);
                self.exporter.metrics().loaded(None, &diagnostics);
                return LoadOutcome::Invalid { diagnostics };
            }
            // A valid edit (or SIGHUP, or start) is the admin's answer to a rolled-back
            // `apply --confirm`: the daemon may enforce the directory again.
            if let Err(e) = crate::confirm::resume_after_edit(&self.settings.run_dir) {
                log::warn!("{e}");
            }
        }
        let files: Vec<PolicyFile> = sources
            .iter()
            .map(|s| PolicyFile {
                name: file_name(&s.path),
                text: s.text.clone(),
            })
            .collect();
        let source_hash = last_good::source_hash(&files);
        rendered.log_warnings();
        let metrics = self.exporter.metrics();
        metrics.loaded(Some((&set, &source_hash)), &diagnostics);
        metrics.rendered(&view, &rendered.rulesets, marks(&view));
        self.exporter.configure(&view.config);
        let intervals = rendered.intervals;
        self.desired = Some(Desired {
            files,
            set,
            interfaces,
            rendered,
        });
        LoadOutcome::Valid {
            source_hash,
            diagnostics,
            intervals,
        }
    }

    fn interfaces_changed(&mut self) -> bool {
        let Some(desired) = &self.desired else {
            return false;
        };
        let now = read_interfaces();
        if now == desired.interfaces {
            return false;
        }
        match self.render(&desired.set, &now) {
            Ok((rendered, view)) => {
                let changed = rendered != desired.rendered;
                self.exporter
                    .metrics()
                    .rendered(&view, &rendered.rulesets, marks(&view));
                if changed {
                    rendered.log_warnings();
                }
                if let Some(d) = &mut self.desired {
                    d.interfaces = now;
                    d.rendered = rendered;
                }
                changed
            }
            Err(e) => {
                log::error!("cannot render for the new interfaces: {e}");
                false
            }
        }
    }

    fn reconcile(&mut self, fresh_read: bool) -> Result<ApplyReport, EngineError> {
        // A pending `apply --confirm` (or its rollback) owns the kernel until it is confirmed,
        // rolled back, or the directory is edited: reconciling now would undo it.
        let now = crate::confirm::now_unix();
        if let Some(hold) = crate::confirm::daemon_hold(&self.settings.run_dir, now) {
            log::warn!("not reconciling: {hold}");
            // The confirmation's watcher may rewrite the kernel meanwhile.
            self.live.invalidate();
            self.exporter.metrics().held();
            return Ok(ApplyReport::default());
        }
        // The writer lock only while touching the kernel, so `hostfw diff` and `hostfw apply`
        // can run beside the daemon instead of waiting for it to exit.
        let _lock = crate::lock::acquire_logged(&self.settings.lock_path())?;
        self.ensure_dataplane()?;
        let (Some(dp), Some(desired)) = (&self.dataplane, &self.desired) else {
            return Err("no policy set loaded".into());
        };
        if fresh_read {
            self.live.invalidate();
        }
        let started = Instant::now();
        let report =
            sync::reconcile_cached(&desired.rendered.rulesets, dp, &self.sync, &mut self.live);
        self.exporter.metrics().reconciled(
            report.as_ref().map_err(|_| ()),
            fresh_read,
            started.elapsed(),
            Instant::now(),
            SystemTime::now(),
        );
        release_memory();
        let report = report?;
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
            policies: desired.rendered.policies.clone(),
        })
    }

    fn kernel_has_state(&mut self) -> Result<bool, EngineError> {
        let _lock = crate::lock::acquire_logged(&self.settings.lock_path())?;
        let dp = self.ensure_dataplane()?;
        for family in [Family::V4, Family::V6] {
            if !dp.supports(family) {
                continue;
            }
            for text in dp.save_tables(family)?.values() {
                let live = crate::ruleset::save::parse_save(text)?;
                if live.chains.keys().any(|c| c.starts_with("cali-")) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    fn save_last_good(&mut self) -> Result<(), EngineError> {
        let Some(desired) = &self.desired else {
            return Ok(());
        };
        last_good::save(&self.settings.last_good_dir(), &desired.files)?;
        Ok(())
    }
}
