//! Prometheus metrics and health for the daemon: one shared `Metrics` the daemon updates as it
//! works, rendered to the text exposition format when scraped, and the `/liveness` and
//! `/readiness` answers. Felix's family names, types, labels and help texts where the meaning
//! matches (see `families.rs` for the facts and their Felix sources), `hostfw_*` for the rest.
//!
//! Cost model: nothing here runs unless someone scrapes. The only kernel read a scrape causes is
//! the per-policy counters (`iptables-save -c`), cached for `COUNTER_TTL` (longer when a read is
//! slow) so any number of scrapers share one read per interval.

mod exporter;
mod exposition;
mod families;
mod kernel;
mod metered;
mod policy_counters;
mod process;
mod record;
mod server;
mod summary;

pub use exporter::Exporter;
pub use kernel::KernelCounters;
pub use metered::Metered;
pub use policy_counters::ActivePolicy;

use exposition::{encode, Family, Sample};
use policy_counters::PolicyCount;

use crate::render::marks::Marks;
use crate::ruleset::{Family as IpFamily, TableName};
use families::Def;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one read of the kernel's per-policy counters serves scrapes, at least.
pub const COUNTER_TTL: Duration = Duration::from_secs(5);

/// A read serves scrapes for at least this many times as long as it took, so the counters cost
/// at most 1/20 of a core however large the ruleset (at M scale one read of both families takes
/// about 0.6 s of CPU, most of it `iptables-save -c` itself).
const COUNTER_TTL_PER_READ: u32 = 20;

/// Both families, as Felix labels them (`ip_version="4"`, `"6"`).
const FAMILIES: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

fn ip_version(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "4",
        IpFamily::V6 => "6",
    }
}

/// A zero for every family and table, so those series exist from the first scrape.
fn per_table<T: Default>() -> BTreeMap<(IpFamily, TableName), T> {
    FAMILIES
        .iter()
        .flat_map(|f| TableName::ALL.map(|t| ((*f, t), T::default())))
        .collect()
}

/// Chains and rules hostfw has in one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSize {
    pub chains: u64,
    pub rules: u64,
}

/// Resources counted on this host (Felix's `felix_active_local_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Active {
    pub endpoints: u64,
    pub policies: u64,
    pub selectors: u64,
    pub tiers: u64,
}

/// Resources counted in the whole policy set (Felix's `felix_cluster_num_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cluster {
    pub host_endpoints: u64,
    pub policies: u64,
    pub profiles: u64,
    pub tiers: u64,
}

/// Every value the daemon reports. The daemon changes it through `Metrics::update`.
#[derive(Debug, Clone)]
pub struct Values {
    pub restore_calls: u64,
    pub restore_errors: u64,
    pub save_calls: u64,
    pub save_errors: u64,
    pub lines_executed: BTreeMap<(IpFamily, TableName), u64>,
    /// What hostfw programmed, per family and table.
    pub tables: BTreeMap<(IpFamily, TableName), TableSize>,
    pub ipset_calls: u64,
    pub ipset_errors: u64,
    /// hostfw's IP sets per family.
    pub ipsets: BTreeMap<IpFamily, u64>,
    pub apply_time: summary::Summary,
    pub dataplane_failures: u64,
    pub resyncs_started: u64,
    pub active: Active,
    pub cluster: Cluster,
    /// Repairs by family and table (`raw`, `mangle`, `filter`, or `ipsets`).
    pub drift_repairs: BTreeMap<(IpFamily, &'static str), u64>,
    /// Counts the distinct valid policy sets loaded (0: none yet); the newest one's sha256.
    pub generation: u64,
    pub newest_sha: Option<String>,
    /// Generation and sha256 of the set whose rules are in the kernel.
    pub in_force: Option<(u64, String)>,
    /// The last load's outcome; `None` before the first load.
    pub config_valid: Option<bool>,
    pub diagnostics_errors: u64,
    pub diagnostics_warnings: u64,
    /// Unix seconds; 0 = never.
    pub last_apply_unix: f64,
    pub confirm_pending: bool,
    pub guard_lockout: u64,
    pub guard_unreachable: u64,
    /// The kernel matches the newest valid generation.
    pub in_sync: bool,
    /// Policies in force (names the per-policy series) and the marks their rules set.
    pub policies: Vec<ActivePolicy>,
    pub marks: Option<Marks>,
}

impl Default for Values {
    fn default() -> Values {
        Values {
            restore_calls: 0,
            restore_errors: 0,
            save_calls: 0,
            save_errors: 0,
            lines_executed: per_table(),
            tables: per_table(),
            ipset_calls: 0,
            ipset_errors: 0,
            ipsets: FAMILIES.iter().map(|f| (*f, 0)).collect(),
            apply_time: summary::Summary::default(),
            dataplane_failures: 0,
            resyncs_started: 0,
            active: Active::default(),
            cluster: Cluster::default(),
            drift_repairs: FAMILIES
                .iter()
                .flat_map(|f| {
                    TableName::ALL
                        .map(|t| t.as_str())
                        .into_iter()
                        .chain([record::IPSETS])
                        .map(|t| ((*f, t), 0))
                })
                .collect(),
            generation: 0,
            newest_sha: None,
            in_force: None,
            config_valid: None,
            diagnostics_errors: 0,
            diagnostics_warnings: 0,
            last_apply_unix: 0.0,
            confirm_pending: false,
            guard_lockout: 0,
            guard_unreachable: 0,
            in_sync: false,
            policies: Vec::new(),
            marks: None,
        }
    }
}

impl Values {
    /// Record one apply's duration for `felix_int_dataplane_apply_time_seconds`.
    fn observe_apply(&mut self, now: Instant, took: Duration) {
        self.apply_time.observe(now, took.as_secs_f64());
    }

    /// Every family except the per-policy and process ones, in a fixed order.
    fn families(&self, now: Instant) -> Vec<Family> {
        let family = |d: Def, samples: Vec<Sample>| Family {
            name: d.name,
            help: d.help,
            kind: d.kind,
            samples,
        };
        let one = |d: Def, v: u64| family(d, vec![Sample::plain(v as f64)]);
        let flag = |d: Def, v: bool| one(d, u64::from(v));
        let per_table = |d: Def, series: Vec<((IpFamily, &str), u64)>| {
            let samples = series
                .into_iter()
                .map(|((f, t), v)| {
                    Sample::labelled(
                        vec![("ip_version", ip_version(f).into()), ("table", t.into())],
                        v as f64,
                    )
                })
                .collect();
            family(d, samples)
        };
        let by_table = |map: &BTreeMap<(IpFamily, TableName), u64>| {
            map.iter()
                .map(|((f, t), v)| ((*f, t.as_str()), *v))
                .collect()
        };
        let chains = self
            .tables
            .iter()
            .map(|((f, t), s)| ((*f, t.as_str()), s.chains))
            .collect();
        let rules = self
            .tables
            .iter()
            .map(|((f, t), s)| ((*f, t.as_str()), s.rules))
            .collect();
        let ipsets_calico = self
            .ipsets
            .iter()
            .map(|(f, v)| Sample::labelled(vec![("ip_version", ip_version(*f).into())], *v as f64))
            .collect();
        let by_severity = |d: Def, values: [(&str, u64); 2]| {
            let samples = values
                .iter()
                .map(|(s, v)| Sample::labelled(vec![("severity", (*s).into())], *v as f64))
                .collect();
            family(d, samples)
        };
        let info = match &self.in_force {
            Some((generation, sha)) => vec![Sample::labelled(
                vec![
                    ("generation", generation.to_string()),
                    ("sha256", sha.clone()),
                ],
                1.0,
            )],
            None => Vec::new(),
        };
        vec![
            one(families::RESTORE_CALLS, self.restore_calls),
            one(families::RESTORE_ERRORS, self.restore_errors),
            one(families::SAVE_CALLS, self.save_calls),
            one(families::SAVE_ERRORS, self.save_errors),
            per_table(families::CHAINS, chains),
            per_table(families::RULES, rules),
            per_table(families::LINES_EXECUTED, by_table(&self.lines_executed)),
            one(families::IPSET_CALLS, self.ipset_calls),
            one(families::IPSET_ERRORS, self.ipset_errors),
            family(families::IPSETS_CALICO, ipsets_calico),
            one(families::IPSETS_TOTAL, self.ipsets.values().sum()),
            family(families::APPLY_TIME, self.apply_time.samples(now)),
            one(families::DATAPLANE_FAILURES, self.dataplane_failures),
            one(families::RESYNCS_STARTED, self.resyncs_started),
            one(families::ACTIVE_ENDPOINTS, self.active.endpoints),
            one(families::ACTIVE_POLICIES, self.active.policies),
            one(families::ACTIVE_SELECTORS, self.active.selectors),
            one(
                families::CLUSTER_HOST_ENDPOINTS,
                self.cluster.host_endpoints,
            ),
            one(families::CLUSTER_TIERS, self.cluster.tiers),
            one(families::CLUSTER_POLICIES, self.cluster.policies),
            one(families::CLUSTER_PROFILES, self.cluster.profiles),
            one(families::ACTIVE_TIERS, self.active.tiers),
            per_table(
                families::DRIFT_REPAIRS,
                self.drift_repairs.iter().map(|(k, v)| (*k, *v)).collect(),
            ),
            one(families::POLICY_GENERATION, self.generation),
            family(families::POLICY_INFO, info),
            // Before the first load there is nothing to judge: report valid (no alert at boot).
            flag(families::CONFIG_VALID, self.config_valid.unwrap_or(true)),
            by_severity(
                families::CONFIG_DIAGNOSTICS,
                [
                    ("error", self.diagnostics_errors),
                    ("warning", self.diagnostics_warnings),
                ],
            ),
            family(
                families::LAST_APPLY,
                vec![Sample::plain(self.last_apply_unix)],
            ),
            flag(families::CONFIRM_PENDING, self.confirm_pending),
            by_severity(
                families::GUARD_FINDINGS,
                [
                    ("lockout", self.guard_lockout),
                    ("unreachable", self.guard_unreachable),
                ],
            ),
            flag(families::IN_SYNC, self.in_sync),
        ]
    }
}

/// Reads the kernel's tables with their counters for the per-policy series: `iptables-save -c`
/// output of every table, one text per family.
pub trait CounterReader: Send {
    fn read(&self) -> Result<Vec<String>, String>;
}

#[derive(Default)]
struct CounterCache {
    read_at: Option<Instant>,
    /// How long the last read stays fresh (`COUNTER_TTL`, or longer after a slow read).
    ttl: Duration,
    counts: Vec<PolicyCount>,
}

/// What `/liveness` and `/readiness` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub live: bool,
    pub ready: bool,
    /// One line saying why (for the JSON body).
    pub detail: String,
}

/// The daemon's metrics, shared between the daemon thread and the HTTP thread.
#[derive(Default)]
pub struct Metrics {
    values: Mutex<Values>,
    counters: Mutex<CounterCache>,
    reader: Mutex<Option<Box<dyn CounterReader>>>,
}

/// A poisoned lock only means another thread panicked mid-update; the numbers are still the
/// best we have, and metrics must never take the daemon down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Change values under the lock (keep `f` short: a scrape waits for it).
    pub fn update(&self, f: impl FnOnce(&mut Values)) {
        f(&mut lock(&self.values));
    }

    /// A copy of the current values.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Values {
        lock(&self.values).clone()
    }

    /// Where scrapes read per-policy counters from (none: no per-policy series).
    pub fn set_counter_reader(&self, reader: Option<Box<dyn CounterReader>>) {
        *lock(&self.reader) = reader;
        lock(&self.counters).read_at = None;
    }

    /// The per-policy counts, read from the kernel at most once per `COUNTER_TTL`. Concurrent
    /// scrapes wait for one read rather than each starting their own.
    fn policy_counts(&self, now: Instant) -> Vec<PolicyCount> {
        let mut cache = lock(&self.counters);
        let fresh = cache
            .read_at
            .is_some_and(|at| now.saturating_duration_since(at) < cache.ttl);
        if !fresh {
            let (policies, marks) = {
                let v = lock(&self.values);
                (v.policies.clone(), v.marks)
            };
            let reader = lock(&self.reader);
            let started = Instant::now();
            cache.counts = match (reader.as_ref(), marks) {
                (Some(reader), Some(marks)) if !policies.is_empty() => match reader.read() {
                    Ok(tables) => policy_counters::count(&policies, &tables, &marks),
                    Err(e) => {
                        log::warn!("metrics: cannot read the kernel's counters: {e}");
                        Vec::new()
                    }
                },
                _ => Vec::new(),
            };
            cache.ttl = COUNTER_TTL.max(started.elapsed() * COUNTER_TTL_PER_READ);
            cache.read_at = Some(now);
        }
        cache.counts.clone()
    }

    /// The whole exposition text. `process`: include the `process_*` families
    /// (`prometheusProcessMetricsEnabled`).
    pub fn render(&self, now: Instant, process: bool) -> String {
        let counts = self.policy_counts(now);
        let mut out = lock(&self.values).families(now);
        out.extend(per_policy(&counts));
        if process {
            if let Some(stats) = process::read() {
                out.extend(process::families(&stats));
            }
        }
        encode(&out)
    }

    /// Ready when the kernel holds the newest valid set. Live whenever it can answer: the daemon
    /// exits when writing keeps failing (systemd restarts it), so a daemon that answers is live.
    pub fn health(&self) -> Health {
        let v = lock(&self.values);
        let detail = if v.in_sync {
            format!("generation {} in force", v.generation)
        } else if v.confirm_pending {
            "waiting for apply --confirm".to_string()
        } else if v.generation == 0 {
            "no valid policy set applied yet".to_string()
        } else {
            format!("generation {} not (yet) in force", v.generation)
        };
        Health {
            live: true,
            ready: v.in_sync,
            detail,
        }
    }
}

/// `hostfw_policy_packets` and `hostfw_policy_bytes`.
fn per_policy(counts: &[PolicyCount]) -> [Family; 2] {
    let series = |value: fn(&PolicyCount) -> u64| {
        counts
            .iter()
            .map(|c| {
                Sample::labelled(
                    vec![
                        ("policy", c.policy.clone()),
                        ("tier", c.tier.clone()),
                        ("direction", c.direction.into()),
                        ("kind", c.kind.into()),
                    ],
                    value(c) as f64,
                )
            })
            .collect()
    };
    let family = |d: Def, samples| Family {
        name: d.name,
        help: d.help,
        kind: d.kind,
        samples,
    };
    [
        family(families::POLICY_PACKETS, series(|c| c.packets)),
        family(families::POLICY_BYTES, series(|c| c.bytes)),
    ]
}
