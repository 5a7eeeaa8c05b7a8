//! What the daemon's work means for the metrics: one method per event (a load, a render for
//! this node, a reconcile, a held reconcile, the lockout guard's findings), each turning the
//! daemon's own values into `Values`. Keeps the daemon's side of the integration to one call
//! per event.

use super::{Active, ActivePolicy, Cluster, Metrics, TableSize};
use crate::diag::Diagnostic;
use crate::finding::{Finding, FindingKind};
use crate::model::PolicySet;
use crate::render::marks::Marks;
use crate::resolve::NodeView;
use crate::ruleset::{Family, IpsetPlan, Ruleset};
use crate::sync::ReconcileReport;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

/// The `table` label of IP set repairs (IP sets belong to no iptables table).
pub(super) const IPSETS: &str = "ipsets";

/// The families whose IP sets a plan changes (`cali4...` / `cali6...` names).
fn ipset_families(plan: &IpsetPlan) -> BTreeSet<Family> {
    [&plan.create, &plan.update, &plan.replace, &plan.destroy]
        .into_iter()
        .flatten()
        .filter_map(|name| match name.get(..5) {
            Some("cali4") => Some(Family::V4),
            Some("cali6") => Some(Family::V6),
            _ => None,
        })
        .collect()
}

/// The tier every policy without one belongs to; it always exists in Calico.
const DEFAULT_TIER: &str = "default";

impl Metrics {
    /// A load finished: of the policy directory (`directory`), or of the last good set, which
    /// says nothing about the directory's validity. `valid`: the set and its sha256 when it is
    /// accepted. Felix's closest event to re-reading every resource is a resync with the
    /// datastore, so each load counts in `felix_resyncs_started`.
    pub fn loaded(
        &self,
        directory: bool,
        valid: Option<(&PolicySet, &str)>,
        diagnostics: &[Diagnostic],
    ) {
        let errors = diagnostics.iter().filter(|d| d.is_error()).count() as u64;
        self.update(|v| {
            v.resyncs_started += 1;
            if directory {
                v.config_valid = Some(valid.is_some());
                v.diagnostics_errors = errors;
                v.diagnostics_warnings = diagnostics.len() as u64 - errors;
            }
            let Some((set, sha)) = valid else { return };
            let mut tiers: BTreeSet<&str> =
                set.tiers.iter().map(|t| t.meta.name.as_str()).collect();
            tiers.insert(DEFAULT_TIER);
            v.cluster = Cluster {
                host_endpoints: set.host_endpoints.len() as u64,
                policies: set.policies.len() as u64,
                profiles: set.profiles.len() as u64,
                tiers: tiers.len() as u64,
            };
            if v.newest_sha.as_deref() != Some(sha) {
                v.generation += 1;
                v.newest_sha = Some(sha.to_string());
                v.in_sync = false;
            }
        });
    }

    /// The newest set was resolved and rendered for this node.
    pub fn rendered(&self, view: &NodeView, rulesets: &[Ruleset], marks: Option<Marks>) {
        let tiers: BTreeSet<&str> = view.policies.values().map(|p| p.tier.as_str()).collect();
        // Felix counts every active IP set (selector or named port) as an active selector;
        // `cali40s:ID` and `cali60s:ID` are one selector in two families.
        let selectors: BTreeSet<&str> = rulesets
            .iter()
            .flat_map(|r| r.ipsets.keys())
            .map(|name| name.get(6..).unwrap_or(name))
            .collect();
        self.update(|v| {
            v.active = Active {
                endpoints: view.endpoints.len() as u64,
                policies: view.policies.len() as u64,
                selectors: selectors.len() as u64,
                tiers: tiers.len() as u64,
            };
            v.policies = view
                .policies
                .values()
                .map(|p| ActivePolicy {
                    name: p.meta.name.clone(),
                    tier: p.tier.clone(),
                })
                .collect();
            v.marks = marks;
            for size in v.tables.values_mut() {
                *size = TableSize::default();
            }
            for count in v.ipsets.values_mut() {
                *count = 0;
            }
            for ruleset in rulesets {
                for table in &ruleset.tables {
                    let rules: usize = table.chains.values().map(|c| c.rules.len()).sum();
                    v.tables.insert(
                        (ruleset.family, table.name),
                        TableSize {
                            chains: table.chains.len() as u64,
                            rules: (rules + table.hooks.len()) as u64,
                        },
                    );
                }
                v.ipsets.insert(ruleset.family, ruleset.ipsets.len() as u64);
            }
        });
    }

    /// A reconcile ended. `drift_check`: it was a check of a kernel we believed in sync, so any
    /// table it wrote was a repair of someone else's change.
    pub fn reconciled(
        &self,
        result: Result<&ReconcileReport, ()>,
        drift_check: bool,
        took: Duration,
        now: Instant,
        wall: SystemTime,
    ) {
        self.update(|v| {
            v.confirm_pending = false;
            let Ok(report) = result else {
                v.dataplane_failures += 1;
                v.in_sync = false;
                return;
            };
            v.observe_apply(now, took);
            if drift_check {
                for table in report.plan.tables.iter().filter(|t| !t.is_empty()) {
                    *v.drift_repairs
                        .entry((table.family, table.table.as_str()))
                        .or_default() += 1;
                }
                for family in ipset_families(&report.plan.ipsets) {
                    *v.drift_repairs.entry((family, IPSETS)).or_default() += 1;
                }
            }
            v.in_sync = true;
            v.in_force = v.newest_sha.clone().map(|sha| (v.generation, sha));
            v.last_apply_unix = wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
        });
    }

    /// The same set now means other rules (the host's interfaces changed): until the next
    /// reconcile the kernel differs from it.
    pub fn rules_changed(&self) {
        self.update(|v| v.in_sync = false);
    }

    /// A pending `apply --confirm` holds the kernel: nothing was reconciled.
    pub fn held(&self) {
        self.update(|v| {
            v.confirm_pending = true;
            v.in_sync = false;
        });
    }

    /// The lockout guard's verdicts on the newest set (resolution warnings are not counted).
    pub fn guarded(&self, findings: &[Finding]) {
        let count = |kind| findings.iter().filter(|f| f.kind == kind).count() as u64;
        let (lockout, unreachable) = (count(FindingKind::Lockout), count(FindingKind::Unreachable));
        self.update(|v| {
            v.guard_lockout = lockout;
            v.guard_unreachable = unreachable;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::Backend;
    use crate::ruleset::{Plan, TableName, TablePlan};

    fn report(plan: Plan) -> ReconcileReport {
        ReconcileReport {
            plan,
            ..ReconcileReport::nothing(Backend::Legacy)
        }
    }

    fn reconcile_ok(m: &Metrics, plan: Plan, drift_check: bool) {
        m.reconciled(
            Ok(&report(plan)),
            drift_check,
            Duration::from_millis(20),
            Instant::now(),
            SystemTime::now(),
        );
    }

    #[test]
    fn ready_only_while_the_newest_valid_generation_is_in_force() {
        let m = Metrics::new();
        let set = PolicySet::default();
        assert!(!m.health().ready, "nothing applied yet");
        m.loaded(true, Some((&set, "aaa")), &[]);
        assert!(!m.health().ready);
        reconcile_ok(&m, Plan::default(), false);
        assert!(m.health().ready);
        assert_eq!(m.snapshot().in_force, Some((1, "aaa".to_string())));

        // An invalid edit changes nothing in force: still ready, config invalid.
        let bad = Diagnostic::file_error("x.yaml", "broken");
        m.loaded(true, None, std::slice::from_ref(&bad));
        // Falling back to the last good set does not make the directory valid.
        m.loaded(false, Some((&set, "aaa")), &[]);
        assert!(m.health().ready);
        assert_eq!(m.snapshot().config_valid, Some(false));

        // A new valid set waits behind a pending confirmation: not ready until applied.
        m.loaded(true, Some((&set, "bbb")), &[]);
        m.held();
        let h = m.health();
        assert!(!h.ready && h.live, "{h:?}");
        assert!(m.snapshot().confirm_pending);
        reconcile_ok(&m, Plan::default(), false);
        assert!(m.health().ready);
        assert_eq!(m.snapshot().in_force, Some((2, "bbb".to_string())));

        // New interfaces change the rules of the same set: not ready until they are written.
        m.rules_changed();
        assert!(!m.health().ready);
        reconcile_ok(&m, Plan::default(), false);
        assert!(m.health().ready);

        // A failed reconcile: not ready, and counted.
        m.reconciled(
            Err(()),
            false,
            Duration::ZERO,
            Instant::now(),
            SystemTime::now(),
        );
        assert!(!m.health().ready);
        assert_eq!(m.snapshot().dataplane_failures, 1);
        assert_eq!(m.snapshot().resyncs_started, 4);
    }

    #[test]
    fn drift_checks_count_repairs_by_table_and_applies_do_not() {
        let m = Metrics::new();
        let table = TablePlan {
            family: Family::V4,
            table: TableName::Filter,
            create: Vec::new(),
            rewrite: vec!["cali-INPUT".into()],
            delete: Vec::new(),
            hooks: Vec::new(),
            kept: Vec::new(),
            restore_input: crate::ruleset::restore::RestoreScript::from_text(
                "*filter\nCOMMIT\n".into(),
            ),
        };
        let plan = Plan {
            ipsets: IpsetPlan {
                update: vec!["cali60s:abc".into()],
                ..IpsetPlan::default()
            },
            tables: vec![table],
        };
        reconcile_ok(&m, plan.clone(), false);
        assert!(m.snapshot().drift_repairs.values().all(|n| *n == 0));
        reconcile_ok(&m, plan, true);
        let repairs = m.snapshot().drift_repairs;
        assert_eq!(repairs[&(Family::V4, "filter")], 1);
        assert_eq!(repairs[&(Family::V6, IPSETS)], 1);
        assert_eq!(repairs.values().sum::<u64>(), 2);
    }
}
