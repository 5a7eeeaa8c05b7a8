//! Reconcile: read live state, plan against the desired rulesets, write, verify; bounded retry.
//! Knows nothing of YAML, files or the model: desired rulesets in, a report or an error out.
//! Every kernel access goes through `&dyn Dataplane`.
//!
//! Write semantics: each table restore is one atomic transaction (the kernel applies all of it
//! or none). A pass writes in plan order (ipsets `before`, tables raw → mangle → filter per
//! family, ipsets `after`) and stops at the first failure; the tables written before it keep
//! their new content, which the plan orders so that no intermediate state is more open than both
//! the old and the new state. A retry re-reads everything and plans from what is really there,
//! so a partial pass converges on the next attempt.

use crate::dataplane::{Backend, Dataplane, DataplaneError};
use crate::ruleset::ipset::{parse_ipset_save, LiveIpsets};
use crate::ruleset::plan::{self, LiveState, Plan, PlanOptions};
use crate::ruleset::save::parse_save;
use crate::ruleset::{Family, Ruleset, Table, TableName};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How a reconcile runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Plan only; write nothing.
    pub dry_run: bool,
    /// Passes before giving up (the first one included).
    pub max_attempts: u32,
    /// Pause after the first failed pass; doubled after each further one.
    pub initial_backoff: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            dry_run: false,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
        }
    }
}

/// What one reconcile did.
#[derive(Debug, Clone)]
pub struct ReconcileReport {
    pub backend: Backend,
    /// The plan computed by the first pass (what `--dry-run` prints).
    pub plan: Plan,
    /// Chains created, rewritten and deleted by the table restores that succeeded.
    pub chains_created: usize,
    pub chains_rewritten: usize,
    pub chains_deleted: usize,
    /// Tables whose hook rules were (re)written.
    pub hooks_fixed: usize,
    /// iptables/ip6tables restores run (0 when already in sync).
    pub restores: usize,
    /// ipset restores run.
    pub ipset_restores: usize,
    /// Passes it took (1 when nothing failed).
    pub attempts: u32,
    pub duration: Duration,
}

impl ReconcileReport {
    /// True when the kernel already matched and nothing was written.
    pub fn in_sync(&self) -> bool {
        self.restores == 0 && self.ipset_restores == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("reading the {} tables: {source}", family_name(*family))]
    Read {
        family: Family,
        #[source]
        source: DataplaneError,
    },
    #[error("reading ipsets: {0}")]
    ReadIpsets(#[source] DataplaneError),
    #[error("cannot parse the {} {table} table as saved by iptables-save: {message}", family_name(*family))]
    Parse {
        family: Family,
        table: &'static str,
        message: String,
    },
    #[error("cannot parse `ipset save` output: {0}")]
    ParseIpsets(String),
    #[error("writing failed after {attempts} attempt(s): {source}")]
    Write {
        attempts: u32,
        #[source]
        source: DataplaneError,
    },
    #[error("verification failed after {attempts} attempt(s): the kernel still differs from the desired state:\n{residual}")]
    Verify { attempts: u32, residual: String },
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

impl SyncError {
    /// Failures a re-read and a new plan may cure.
    fn is_retryable(&self) -> bool {
        match self {
            SyncError::Read { source, .. }
            | SyncError::ReadIpsets(source)
            | SyncError::Write { source, .. } => source.is_retryable(),
            SyncError::Verify { .. } => true,
            SyncError::Parse { .. } | SyncError::ParseIpsets(_) => false,
        }
    }

    fn with_attempts(self, n: u32) -> SyncError {
        match self {
            SyncError::Write { source, .. } => SyncError::Write {
                attempts: n,
                source,
            },
            SyncError::Verify { residual, .. } => SyncError::Verify {
                attempts: n,
                residual,
            },
            other => other,
        }
    }
}

/// The live state of every family the dataplane supports.
#[derive(Debug, Clone)]
pub struct Live {
    pub tables: Vec<LiveState>,
    pub ipsets: LiveIpsets,
}

/// The kernel state a successful reconcile last saw (after its verifying read). A long-lived
/// caller (the daemon) passes it to the next `reconcile_cached`, which then plans without
/// reading first: on a large ruleset the read costs as much as the write. A stale cache is safe:
/// a plan built from it either fails to apply or leaves a residual diff, and both make the pass
/// retry from a fresh read; the verification always reads what was written. An in-sync answer
/// from the cache reads nothing, so a drift check must `invalidate` first.
#[derive(Debug, Clone, Default)]
pub struct LiveCache(Option<Live>);

impl LiveCache {
    /// Forget the cached state (e.g. after the kernel may have been changed by someone else):
    /// the next reconcile reads first.
    pub fn invalidate(&mut self) {
        self.0 = None;
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// Families this dataplane can program, in write order.
fn families(dp: &dyn Dataplane) -> Vec<Family> {
    [Family::V4, Family::V6]
        .into_iter()
        .filter(|f| dp.supports(*f))
        .collect()
}

/// Read every table of every supported family, and our ipsets.
pub fn read_live(dp: &dyn Dataplane) -> Result<Live, SyncError> {
    let tables = families(dp)
        .into_iter()
        .map(|family| read_family(dp, family))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Live {
        tables,
        ipsets: read_ipsets(dp)?,
    })
}

fn read_family(dp: &dyn Dataplane, family: Family) -> Result<LiveState, SyncError> {
    let saved = dp
        .save_tables(family)
        .map_err(|source| SyncError::Read { family, source })?;
    let mut tables = BTreeMap::new();
    for (table, text) in saved {
        let live = parse_save(&text).map_err(|e| SyncError::Parse {
            family,
            table: table.as_str(),
            message: e.to_string(),
        })?;
        tables.insert(table, live);
    }
    Ok(LiveState { family, tables })
}

fn read_ipsets(dp: &dyn Dataplane) -> Result<LiveIpsets, SyncError> {
    let text = dp.ipset_save().map_err(SyncError::ReadIpsets)?;
    parse_ipset_save(&text).map_err(|e| SyncError::ParseIpsets(e.to_string()))
}

/// The state after writing `plan`: the families and ipsets it wrote are read again, the rest is
/// what the pass read before (a large untouched family is not re-read just to verify).
fn reread_written(dp: &dyn Dataplane, mut live: Live, plan: &Plan) -> Result<Live, SyncError> {
    let written: BTreeSet<Family> = plan
        .tables
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| t.family)
        .collect();
    for state in &mut live.tables {
        if written.contains(&state.family) {
            *state = read_family(dp, state.family)?;
        }
    }
    if !plan.ipsets.is_empty() {
        live.ipsets = read_ipsets(dp)?;
    }
    Ok(live)
}

/// The desired state per supported family. A supported family without a desired ruleset (IPv6
/// with `ipv6Support: false`) is planned as empty, so hostfw's old state there is removed; a
/// desired family the host cannot program is dropped with a warning.
fn desired_for(dp: &dyn Dataplane, desired: &[Ruleset]) -> Vec<Ruleset> {
    for ruleset in desired {
        if !dp.supports(ruleset.family) {
            log::warn!(
                "{:?} rules not programmed: the host has no {} tools or kernel support",
                ruleset.family,
                match ruleset.family {
                    Family::V4 => "iptables",
                    Family::V6 => "ip6tables",
                }
            );
        }
    }
    families(dp)
        .into_iter()
        .map(|family| {
            desired
                .iter()
                .find(|r| r.family == family)
                .cloned()
                .unwrap_or_else(|| empty_ruleset(family))
        })
        .collect()
}

/// A family with no hostfw state at all.
pub fn empty_ruleset(family: Family) -> Ruleset {
    Ruleset {
        family,
        tables: TableName::ALL
            .into_iter()
            .map(|name| Table {
                name,
                chains: BTreeMap::new(),
                hooks: Vec::new(),
            })
            .collect(),
        ipsets: BTreeMap::new(),
    }
}

/// Compute the plan from the current kernel state without writing (what `hostfw diff` shows).
pub fn diff(desired: &[Ruleset], dp: &dyn Dataplane) -> Result<Plan, SyncError> {
    let desired = desired_for(dp, desired);
    let live = read_live(dp)?;
    Ok(plan_against(&desired, &live, dp))
}

fn plan_against(desired: &[Ruleset], live: &Live, dp: &dyn Dataplane) -> Plan {
    plan::plan(
        desired,
        &live.tables,
        &live.ipsets,
        PlanOptions {
            nft: dp.backend() == Backend::Nft,
        },
    )
}

/// Make the kernel match `desired`: read → plan → write → read again and check the plan is
/// empty. Retryable failures (lock held, concurrent writer, failed restore, residual diff) start
/// a new pass after a doubling pause, at most `opts.max_attempts` passes.
pub fn reconcile(
    desired: &[Ruleset],
    dp: &dyn Dataplane,
    opts: &SyncOptions,
) -> Result<ReconcileReport, SyncError> {
    reconcile_cached(desired, dp, opts, &mut LiveCache::default())
}

/// `reconcile`, starting from `cache` instead of a read when it holds a state (see
/// `LiveCache`); on success the cache holds the verified state, on failure it is emptied.
pub fn reconcile_cached(
    desired: &[Ruleset],
    dp: &dyn Dataplane,
    opts: &SyncOptions,
    cache: &mut LiveCache,
) -> Result<ReconcileReport, SyncError> {
    let desired = desired_for(dp, desired);
    run_passes(dp, opts, cache, |live| plan_against(&desired, live, dp))
}

/// Remove every chain, hook rule and ipset hostfw owns, and verify nothing of ours is left.
/// Sets the other iptables backend's rules still use are left: ipsets are shared by both
/// backends, and the kernel refuses to destroy a set in use.
pub fn flush(dp: &dyn Dataplane, opts: &SyncOptions) -> Result<ReconcileReport, SyncError> {
    let shared = dp.sets_used_by_other_backend();
    run_passes(dp, opts, &mut LiveCache::default(), |live| {
        let mut ipsets = live.ipsets.clone();
        ipsets.sets.retain(|name, _| !shared.contains(name));
        plan::flush_plan(&live.tables, &ipsets)
    })
}

fn run_passes(
    dp: &dyn Dataplane,
    opts: &SyncOptions,
    cache: &mut LiveCache,
    make_plan: impl Fn(&Live) -> Plan,
) -> Result<ReconcileReport, SyncError> {
    let started = Instant::now();
    let mut report = ReconcileReport {
        backend: dp.backend(),
        plan: Plan::default(),
        chains_created: 0,
        chains_rewritten: 0,
        chains_deleted: 0,
        hooks_fixed: 0,
        restores: 0,
        ipset_restores: 0,
        attempts: 0,
        duration: Duration::ZERO,
    };
    let mut backoff = opts.initial_backoff;
    loop {
        report.attempts += 1;
        // Only the first pass may trust the cache; a retry always reads.
        let start = cache.0.take();
        match pass(dp, opts, start, &make_plan, &mut report) {
            Ok(seen) => {
                cache.0 = seen;
                break;
            }
            Err(e) if e.is_retryable() && report.attempts < opts.max_attempts.max(1) => {
                log::warn!(
                    "reconcile attempt {} failed, re-reading and retrying in {} ms: {e}",
                    report.attempts,
                    backoff.as_millis()
                );
                std::thread::sleep(backoff);
                backoff *= 2;
            }
            Err(e) => return Err(e.with_attempts(report.attempts)),
        }
    }
    report.duration = started.elapsed();
    Ok(report)
}

/// One read → plan → write → verify pass, starting from `start` instead of a read when given.
/// Returns the state it last saw (verified after a write).
fn pass(
    dp: &dyn Dataplane,
    opts: &SyncOptions,
    start: Option<Live>,
    make_plan: &impl Fn(&Live) -> Plan,
    report: &mut ReconcileReport,
) -> Result<Option<Live>, SyncError> {
    let live = match start {
        Some(live) => live,
        None => read_live(dp)?,
    };
    let plan = make_plan(&live);
    if report.attempts == 1 {
        report.plan = plan.clone();
    }
    if opts.dry_run || plan.is_empty() {
        return Ok(Some(live));
    }
    write(dp, &plan, report)?;
    let after = reread_written(dp, live, &plan)?;
    let residual = make_plan(&after);
    if !residual.is_empty() {
        return Err(SyncError::Verify {
            attempts: report.attempts,
            residual: residual.to_string(),
        });
    }
    Ok(Some(after))
}

fn write(dp: &dyn Dataplane, plan: &Plan, report: &mut ReconcileReport) -> Result<(), SyncError> {
    let failed = |source| SyncError::Write {
        attempts: report.attempts,
        source,
    };
    if !plan.ipsets.before.is_empty() {
        dp.ipset_restore(&plan.ipsets.before).map_err(failed)?;
        report.ipset_restores += 1;
    }
    for table in &plan.tables {
        if table.restore_input.is_empty() {
            continue;
        }
        dp.restore(table.family, table.table, &table.restore_input)
            .map_err(|source| SyncError::Write {
                attempts: report.attempts,
                source,
            })?;
        report.restores += 1;
        report.chains_created += table.create.len();
        report.chains_rewritten += table.rewrite.len();
        report.chains_deleted += table.delete.len();
        if !table.hooks.is_empty() {
            report.hooks_fixed += 1;
        }
    }
    if !plan.ipsets.after.is_empty() {
        dp.ipset_restore(&plan.ipsets.after)
            .map_err(|source| SyncError::Write {
                attempts: report.attempts,
                source,
            })?;
        report.ipset_restores += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::{Call, FakeDataplane, Fault, Op};
    use crate::ruleset::{
        Action, Chain, HookPosition, HookRule, Ipset, IpsetType, Match, PortSpec, Rule,
        SetDirection,
    };
    use std::collections::BTreeSet;

    const SET: &str = "cali40s:testset";

    fn rule(matches: Vec<Match>, action: Action) -> Rule {
        Rule {
            matches,
            action,
            comments: Vec::new(),
        }
    }

    fn tcp_port(port: u16) -> Vec<Match> {
        vec![
            Match::Protocol {
                negated: false,
                name: "tcp".into(),
            },
            Match::DestinationPorts {
                negated: false,
                ports: vec![PortSpec::Single(port)],
            },
        ]
    }

    /// filter: INPUT → cali-INPUT (accept `port`, drop sources in SET); raw and mangle empty.
    fn desired(family: Family, port: u16, members: &[&str]) -> Ruleset {
        let mut ruleset = empty_ruleset(family);
        let filter = ruleset
            .tables
            .iter_mut()
            .find(|t| t.name == TableName::Filter)
            .unwrap();
        let set_rule = rule(
            vec![Match::Set {
                negated: false,
                name: SET.into(),
                direction: SetDirection::Src,
            }],
            Action::Drop,
        );
        filter.chains.insert(
            "cali-INPUT".into(),
            Chain {
                name: "cali-INPUT".into(),
                rules: vec![
                    rule(tcp_port(port), Action::Accept),
                    rule(Vec::new(), Action::Jump("cali-pi-test".into())),
                ],
            },
        );
        filter.chains.insert(
            "cali-pi-test".into(),
            Chain {
                name: "cali-pi-test".into(),
                rules: vec![set_rule],
            },
        );
        filter.hooks.push(HookRule {
            kernel_chain: "INPUT".into(),
            position: HookPosition::Insert,
            rule: rule(Vec::new(), Action::Jump("cali-INPUT".into())),
        });
        if family == Family::V4 {
            ruleset.ipsets.insert(
                SET.into(),
                Ipset {
                    name: SET.into(),
                    set_type: IpsetType::HashNet,
                    family,
                    max_elements: 1_048_576,
                    members: members
                        .iter()
                        .map(|m| m.to_string())
                        .collect::<BTreeSet<_>>(),
                },
            );
        }
        ruleset
    }

    fn both(port: u16) -> Vec<Ruleset> {
        vec![
            desired(Family::V4, port, &["203.0.113.0/24"]),
            desired(Family::V6, port, &[]),
        ]
    }

    fn quick() -> SyncOptions {
        SyncOptions {
            initial_backoff: Duration::ZERO,
            ..SyncOptions::default()
        }
    }

    fn input_rule_count(fake: &FakeDataplane) -> usize {
        fake.rules(Family::V4, TableName::Filter, "INPUT")
            .unwrap()
            .len()
    }

    #[test]
    fn first_apply_writes_then_second_apply_writes_nothing() {
        let fake = FakeDataplane::default();
        let first = reconcile(&both(22), &fake, &quick()).unwrap();
        assert!(!first.in_sync());
        assert_eq!(first.attempts, 1);
        // Only the filter tables have content: one restore per family, one ipset restore.
        assert_eq!(first.restores, 2);
        assert_eq!(first.chains_created, 4);
        assert!(fake
            .chains(Family::V4, TableName::Filter)
            .contains(&"cali-pi-test".to_string()));
        assert_eq!(
            fake.set_members(SET).unwrap(),
            ["203.0.113.0/24".to_string()].into_iter().collect()
        );

        fake.clear_calls();
        let second = reconcile(&both(22), &fake, &quick()).unwrap();
        assert!(second.in_sync());
        assert!(fake
            .calls()
            .iter()
            .all(|c| !c.is_restore() && !c.is_ipset_restore()));
    }

    #[test]
    fn dry_run_plans_but_writes_nothing() {
        let fake = FakeDataplane::default();
        let opts = SyncOptions {
            dry_run: true,
            ..quick()
        };
        let report = reconcile(&both(22), &fake, &opts).unwrap();
        assert!(!report.plan.is_empty());
        assert!(fake
            .calls()
            .iter()
            .all(|c| !c.is_restore() && !c.is_ipset_restore()));
        assert_eq!(
            fake.chains(Family::V4, TableName::Filter),
            ["FORWARD", "INPUT", "OUTPUT"]
        );
    }

    #[test]
    fn a_held_lock_is_retried_and_converges() {
        let fake = FakeDataplane::default();
        fake.inject(Op::Restore, Fault::Busy);
        let report = reconcile(&both(22), &fake, &quick()).unwrap();
        assert_eq!(report.attempts, 2);
        assert!(diff(&both(22), &fake).unwrap().is_empty());
    }

    #[test]
    fn a_persistent_failure_reports_the_input_and_stderr() {
        let fake = FakeDataplane::default();
        for _ in 0..5 {
            fake.inject(Op::Restore, Fault::Fail("Couldn't load match `foo'".into()));
        }
        let err = reconcile(&both(22), &fake, &quick()).unwrap_err();
        match &err {
            SyncError::Write {
                attempts,
                source: DataplaneError::RestoreFailed { stderr, input, .. },
            } => {
                assert_eq!(*attempts, 5);
                assert!(stderr.contains("Couldn't load match"));
                assert!(input.starts_with("*filter\n"), "{input}");
                assert!(input.contains("cali-INPUT"));
            }
            other => panic!("expected a write failure, got {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("Couldn't load match") && text.contains("--- input ---"));
        // Nothing of ours reached iptables: every restore failed before applying.
        assert_eq!(input_rule_count(&fake), 0);
    }

    #[test]
    fn a_failed_table_stops_the_pass_and_the_retry_converges() {
        let fake = FakeDataplane::default();
        fake.inject(Op::Restore, Fault::Fail("boom".into()));
        let report = reconcile(&both(22), &fake, &quick()).unwrap();
        assert_eq!(report.attempts, 2);
        let calls = fake.calls();
        let first_restore = calls.iter().position(Call::is_restore).unwrap();
        // After the failed restore the pass stops: the next call is a re-read, not a write.
        assert_eq!(calls[first_restore + 1].argv[0], "iptables-legacy-save");
        assert!(diff(&both(22), &fake).unwrap().is_empty());
    }

    #[test]
    fn a_concurrent_writer_is_caught_by_verification_and_repaired() {
        let fake = FakeDataplane::default();
        reconcile(&both(22), &fake, &quick()).unwrap();
        // While we write the new port, another tool flushes our INPUT chain.
        fake.interfere(
            Family::V4,
            TableName::Filter,
            "*filter\n:cali-pi-test - -\nCOMMIT\n",
        );
        let report = reconcile(&both(2222), &fake, &quick()).unwrap();
        assert_eq!(report.attempts, 2);
        assert!(diff(&both(2222), &fake).unwrap().is_empty());
        assert_eq!(
            fake.rules(Family::V4, TableName::Filter, "cali-pi-test")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn foreign_rules_and_sets_survive_apply_and_flush() {
        let fake = FakeDataplane::default();
        fake.external_ipset_restore(
            "create f2b-sshd hash:ip family inet maxelem 65536\nadd f2b-sshd 203.0.113.7\n",
        );
        fake.external_restore(
            Family::V4,
            TableName::Filter,
            "*filter\n:f2b-sshd - -\n:DOCKER-USER - -\n-A f2b-sshd -m set --match-set f2b-sshd src -j REJECT\n\
             -A DOCKER-USER -j RETURN\n-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n\
             -A INPUT -s 198.51.100.9/32 -j DROP\n-A FORWARD -j DOCKER-USER\nCOMMIT\n",
        );
        let before_input = fake.rules(Family::V4, TableName::Filter, "INPUT").unwrap();
        reconcile(&both(22), &fake, &quick()).unwrap();
        let after_input = fake.rules(Family::V4, TableName::Filter, "INPUT").unwrap();
        assert_eq!(after_input.len(), before_input.len() + 1);
        // Insert mode: our hook first, then the foreign rules in their order.
        assert_eq!(after_input[1..], before_input[..]);

        let report = flush(&fake, &quick()).unwrap();
        assert!(report.chains_deleted >= 2);
        assert_eq!(
            fake.rules(Family::V4, TableName::Filter, "INPUT").unwrap(),
            before_input
        );
        assert_eq!(
            fake.chains(Family::V4, TableName::Filter),
            ["DOCKER-USER", "FORWARD", "INPUT", "OUTPUT", "f2b-sshd"]
        );
        assert_eq!(fake.sets(), ["f2b-sshd"]);
        assert_eq!(
            fake.rules(Family::V4, TableName::Filter, "f2b-sshd")
                .unwrap(),
            ["-m set --match-set f2b-sshd src -j REJECT"]
        );
    }

    #[test]
    fn a_membership_change_touches_only_the_set() {
        let fake = FakeDataplane::default();
        reconcile(&both(22), &fake, &quick()).unwrap();
        fake.clear_calls();
        let changed = vec![
            desired(Family::V4, 22, &["203.0.113.0/24", "198.51.100.64/26"]),
            desired(Family::V6, 22, &[]),
        ];
        let report = reconcile(&changed, &fake, &quick()).unwrap();
        assert_eq!(report.restores, 0);
        assert_eq!(report.ipset_restores, 1);
        assert_eq!(fake.set_members(SET).unwrap().len(), 2);
    }

    #[test]
    fn verification_rereads_only_what_was_written() {
        let fake = FakeDataplane::default();
        reconcile(&both(22), &fake, &quick()).unwrap();
        fake.clear_calls();
        let v4_changed = vec![
            desired(Family::V4, 2222, &["203.0.113.0/24"]),
            desired(Family::V6, 22, &[]),
        ];
        let report = reconcile(&v4_changed, &fake, &quick()).unwrap();
        assert_eq!(report.restores, 1);
        let calls = fake.calls();
        let count = |program: &str| calls.iter().filter(|c| c.argv[0] == program).count();
        // IPv4: read, write, read again (four tables each read); IPv6 and ipsets: read once.
        assert_eq!(count("iptables-legacy-save"), 8);
        assert_eq!(count("ip6tables-legacy-save"), 4);
        assert_eq!(count("ipset"), 1);
        assert!(diff(&v4_changed, &fake).unwrap().is_empty());
    }

    #[test]
    fn a_cached_state_saves_the_first_read_and_a_stale_one_is_repaired() {
        let fake = FakeDataplane::default();
        let mut cache = LiveCache::default();
        reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        assert!(!cache.is_empty());

        // A change planned from the cache: no read before the write.
        fake.clear_calls();
        let report = reconcile_cached(&both(2222), &fake, &quick(), &mut cache).unwrap();
        assert_eq!(report.attempts, 1);
        let calls = fake.calls();
        assert!(calls[0].is_restore(), "first call was {:?}", calls[0].argv);
        assert!(diff(&both(2222), &fake).unwrap().is_empty());

        // Someone flushes our chain behind the cache's back: a change planned from the stale
        // cache is caught by verification and the retry reads afresh.
        fake.external_restore(
            Family::V4,
            TableName::Filter,
            "*filter\n:cali-pi-test - -\nCOMMIT\n",
        );
        let report = reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        assert_eq!(report.attempts, 2);
        assert!(diff(&both(22), &fake).unwrap().is_empty());

        // In sync according to the cache: nothing is read or written; after `invalidate` the
        // drift is seen.
        fake.external_restore(
            Family::V4,
            TableName::Filter,
            "*filter\n:cali-pi-test - -\nCOMMIT\n",
        );
        fake.clear_calls();
        assert!(reconcile_cached(&both(22), &fake, &quick(), &mut cache)
            .unwrap()
            .in_sync());
        assert!(fake.calls().is_empty());
        cache.invalidate();
        let report = reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        assert_eq!(report.restores, 1);
        assert!(diff(&both(22), &fake).unwrap().is_empty());
    }

    #[test]
    fn without_ipv6_tools_only_ipv4_is_read_and_written() {
        let fake = FakeDataplane::default().without_ipv6();
        reconcile(&both(22), &fake, &quick()).unwrap();
        assert!(fake
            .calls()
            .iter()
            .all(|c| !c.argv[0].starts_with("ip6tables")));
        assert_eq!(
            fake.chains(Family::V6, TableName::Filter),
            ["FORWARD", "INPUT", "OUTPUT"]
        );
    }

    #[test]
    fn ipv6_turned_off_removes_our_ipv6_state() {
        let fake = FakeDataplane::default();
        reconcile(&both(22), &fake, &quick()).unwrap();
        let v4_only = vec![desired(Family::V4, 22, &["203.0.113.0/24"])];
        reconcile(&v4_only, &fake, &quick()).unwrap();
        assert_eq!(
            fake.chains(Family::V6, TableName::Filter),
            ["FORWARD", "INPUT", "OUTPUT"]
        );
        assert_eq!(input_rule_count(&fake), 1);
    }

    #[test]
    fn a_save_that_fails_for_good_is_not_retried() {
        let fake = FakeDataplane::default();
        fake.inject(Op::Save, Fault::PermissionDenied);
        let err = reconcile(&both(22), &fake, &quick()).unwrap_err();
        assert!(matches!(
            err,
            SyncError::Read {
                source: DataplaneError::PermissionDenied { .. },
                ..
            }
        ));
        assert!(err.to_string().contains("run as root"));
        assert_eq!(fake.calls().len(), 1);
    }
}
