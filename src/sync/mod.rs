//! Reconcile: read live state, plan against the desired rulesets, write, check; bounded retry.
//! Knows nothing of YAML, files or the model: desired rulesets in, a report or an error out.
//! Every kernel access goes through `&dyn Dataplane`.
//!
//! Write semantics: each table restore is one atomic transaction (the kernel applies all of it
//! or none). A pass writes in plan order (ipsets `before`, tables raw → mangle → filter per
//! family, ipsets `after`) and stops at the first failure. A table written earlier in the same
//! pass is then put back as the pass read it (and set members with it): a new raw table beside
//! an old filter table can admit what both the old and the new policy deny (a source the old
//! policy dropped untracked in raw and the new one drops in filter), so a pass ends in the old
//! state or the new, never a mix (docs/design.md, "Failure model"). A retry re-reads everything
//! and plans from what is really there.
//!
//! After a write the pass does not read back what it wrote: a restore the kernel accepted holds
//! exactly what it declared, so the state it left is computed from the restore input
//! (`ruleset::replay`). It reads back only the hook chains it wrote in the kernel's own chains,
//! which other tools write to as well, where that is cheap (on nft, listing those chains; on
//! legacy, saving a small table), and checks that nothing is left to do there. Someone changing
//! a chain meanwhile is drift like any later change, for the next read (the daemon's post-write
//! checks and refresh, or the next `apply`) to repair.

pub mod rollback;

use crate::dataplane::{Backend, Dataplane, DataplaneError};
use crate::ruleset::ipset::{parse_ipset_save, write_add, write_create, LiveIpsets};
use crate::ruleset::memo::{ChainHashes, HashMemo};
use crate::ruleset::packed::Targets;
use crate::ruleset::plan::{self, LiveState, Overtaken, Plan, PlanOptions, Suspects, TablePlan};
use crate::ruleset::replay::replay_with;
use crate::ruleset::save::{parse_save, LiveChain, LiveRule, LiveTable, SavedTables};
use crate::ruleset::{Family, Ipset, Ruleset, Table, TableName};
use rollback::Snapshot;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
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
    /// Foreign jumps (fail2ban, CrowdSec, sshguard, admin chains) our inserted hooks precede in
    /// the state the reconcile left; each is logged as a warning when this reconcile wrote hooks.
    pub overtaken: Vec<Overtaken>,
    pub duration: Duration,
}

impl ReconcileReport {
    /// The report of a reconcile on `backend` that has found nothing to do (yet).
    pub fn nothing(backend: Backend) -> ReconcileReport {
        ReconcileReport {
            backend,
            plan: Plan::default(),
            chains_created: 0,
            chains_rewritten: 0,
            chains_deleted: 0,
            hooks_fixed: 0,
            restores: 0,
            ipset_restores: 0,
            attempts: 1,
            overtaken: Vec::new(),
            duration: Duration::ZERO,
        }
    }

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
    /// The save tool printed no trace of a table just written: its output cannot be trusted,
    /// and planning from it again would insert the hook rules once more on every retry.
    #[error("{} {table}: iptables-save shows none of the chains hostfw just wrote there (it printed {bytes} bytes for that family); its output cannot be trusted, so hostfw stops instead of writing the same rules again", family_name(*family))]
    UntrustedSave {
        family: Family,
        table: &'static str,
        bytes: usize,
    },
    /// A chain listed after a write holds rules of ours the save before it did not show.
    #[error("{} {table} chain {chain}: holds more of hostfw's rules than iptables-save showed before the write; its output cannot be trusted, so hostfw stops instead of writing the same rules again", family_name(*family))]
    UnseenRules {
        family: Family,
        table: &'static str,
        chain: String,
    },
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
            SyncError::Parse { .. }
            | SyncError::ParseIpsets(_)
            | SyncError::UntrustedSave { .. }
            | SyncError::UnseenRules { .. } => false,
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

impl Live {
    /// Every chain, with its family and table.
    fn chains(&self) -> impl Iterator<Item = (Family, TableName, &LiveChain)> {
        self.tables.iter().flat_map(|state| {
            state.tables.iter().flat_map(move |(table, lt)| {
                lt.chains.values().map(move |c| (state.family, *table, c))
            })
        })
    }

    /// Every chain, with its family and table, to change.
    fn chains_mut(&mut self) -> impl Iterator<Item = (Family, TableName, &mut LiveChain)> {
        self.tables.iter_mut().flat_map(|state| {
            let family = state.family;
            state.tables.iter_mut().flat_map(move |(table, lt)| {
                lt.chains.values_mut().map(move |c| (family, *table, c))
            })
        })
    }

    fn table_mut(&mut self, family: Family, table: TableName) -> Option<&mut LiveTable> {
        self.tables
            .iter_mut()
            .find(|s| s.family == family)
            .and_then(|s| s.tables.get_mut(&table))
    }

    fn chain(&self, family: Family, table: TableName, name: &str) -> Option<&LiveChain> {
        self.tables
            .iter()
            .find(|s| s.family == family)
            .and_then(|s| s.tables.get(&table))
            .and_then(|t| t.chains.get(name))
    }
}

/// The kernel state a successful reconcile last saw or left (read, or replayed after a write).
/// A long-lived caller (the daemon) passes it to the next `reconcile_cached`, which then plans
/// without reading first: on a large ruleset the read costs as much as the write. A stale cache
/// is safe: a plan built from it either fails to apply, which makes the pass retry from a fresh
/// read, or leaves the kernel differing where someone else changed it, which is drift for the
/// next fresh read. An in-sync answer from the cache reads nothing, so a drift check must
/// `invalidate` first.
///
/// It also remembers the text the kernel printed for each rule of ours (by chain and hash) in
/// the last state read, and survives `invalidate` with it: a later read whose rule under the
/// same hash reads differently was tampered with (`iptables -R` keeping the comment), and the
/// chain is repaired. The kernel prints a rule it was given the same way every time, so the
/// comparison needs no model of how it rewrites rule text. A chain just written is remembered
/// from its first read after the write.
#[derive(Debug, Default)]
pub struct LiveCache {
    live: Option<Live>,
    texts: RuleDigests,
    /// The rule hashes of the chains last planned (a policy edit changes few chains).
    hashes: HashMemo,
    /// Keep our chains of `live` packed (`ruleset::packed`).
    pack: bool,
    /// The chains of `live` found changed in place when it came in (`start_from`), for the
    /// next pass to repair.
    judged: Option<Suspects>,
    /// The last reconcile found `live` in sync and wrote nothing; what it found overtaken.
    settled: Option<Vec<Overtaken>>,
    /// The state `start_from` took in reads exactly as the settled one did: a reconcile of
    /// the same desired state would plan nothing (`quiet_check`).
    quiet: bool,
}

/// What the cache remembers of our rules' printed text: per chain, in kernel order, a keyed
/// digest of each hashed rule's hash and of its text. Sixteen bytes a rule instead of a copy of
/// the text (1.8 million rules at 10,000 policies, ~150 bytes of text each). The digest key is
/// drawn at random once per cache, so nobody outside the process can aim a changed rule at a
/// colliding digest; an accidental collision (a change going unnoticed) has odds of 2^-64.
#[derive(Debug, Clone, Default)]
struct RuleDigests {
    key: DigestKey,
    /// Shared with the `Reader`s made meanwhile.
    chains: Arc<BTreeMap<ChainKey, KnownChain>>,
}

/// A chain of one family's table.
type ChainKey = (Family, TableName, String);

/// The random key of a cache's digests (`RuleDigests`); a `Reader` digests with a copy.
#[derive(Debug, Clone, Default)]
struct DigestKey(std::hash::RandomState);

/// The hashed rules of one chain, in kernel order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KnownChain {
    /// Exactly as long as the chain (kept for every chain of ours between reads), and shared:
    /// a chain remembered again as it was (packed, or about to be repaired) costs no copy,
    /// also while a drift check's reader holds the digests it started from.
    rules: Arc<[RuleDigest]>,
    /// No hash occurs twice (as rendered; a duplicated rule is drift).
    unique: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RuleDigest {
    hash: u64,
    text: u64,
}

impl DigestKey {
    fn digest(&self, text: &str) -> u64 {
        use std::hash::BuildHasher;
        self.0.hash_one(text)
    }

    fn rule(&self, rule: &LiveRule) -> Option<RuleDigest> {
        Some(RuleDigest {
            hash: self.digest(rule.hash.as_deref()?),
            text: self.digest(&rule.text),
        })
    }

    /// The hashed rules of `rules`; `None` when there are none.
    fn chain(&self, rules: &[LiveRule]) -> Option<KnownChain> {
        let rules: Arc<[RuleDigest]> = rules.iter().filter_map(|r| self.rule(r)).collect();
        if rules.is_empty() {
            return None;
        }
        let distinct: std::collections::HashSet<u64> = rules.iter().map(|r| r.hash).collect();
        let unique = distinct.len() == rules.len();
        Some(KnownChain { rules, unique })
    }
}

impl RuleDigests {
    /// Forget everything and remember the hashed rules of `live` as the kernel printed them
    /// (a chain known only from what was written is learnt at its next read). A packed chain
    /// holds no texts to learn from: it was read (and learnt, `learn_read`) before, or kept
    /// from the cache. A chain in `keep` was found changed (it is about to be repaired from
    /// what was remembered): what was remembered of those stays.
    fn learn(&mut self, live: &Live, keep: &Suspects) {
        let mut chains = BTreeMap::new();
        for (family, table, chain) in live.chains().filter(|(_, _, c)| !c.unverified) {
            let key = (family, table, chain.name.clone());
            if chain.packed.is_some() || keep.chains.contains(&key) {
                if let Some(was) = self.chains.get(&key) {
                    chains.insert(key, was.clone());
                }
                continue;
            }
            if let Some(now) = self.key.chain(&chain.rules) {
                chains.insert(key, now);
            }
        }
        self.chains = Arc::new(chains);
    }

    /// Remember what a read digested as it came in (`Fresh`) instead of everything before;
    /// the chains in `keep` keep what was remembered of them, as in `learn`.
    fn learn_read(&mut self, read: BTreeMap<ChainKey, KnownChain>, keep: &Suspects) {
        let mut chains = read;
        for key in &keep.chains {
            match self.chains.get(key) {
                Some(known) => chains.insert(key.clone(), known.clone()),
                None => chains.remove(key),
            };
        }
        self.chains = Arc::new(chains);
    }

    /// Where `seen` (the hashed rules of `key`'s chain as read now) first holds a rule whose
    /// text differs from the text remembered under the same hash (the last one remembered
    /// when the chain held a hash twice): its place among the chain's hashed rules. Positions
    /// are compared first: unless the chain was reordered, that is all it takes.
    fn changed(&self, key: &ChainKey, seen: &KnownChain) -> Option<usize> {
        let known = self.chains.get(key)?;
        let mut by_hash: Option<std::collections::HashMap<u64, u64>> = None;
        for (i, seen) in seen.rules.iter().enumerate() {
            let remembered = match known.rules.get(i) {
                Some(k) if known.unique && k.hash == seen.hash => Some(k.text),
                _ => by_hash
                    .get_or_insert_with(|| known.rules.iter().map(|k| (k.hash, k.text)).collect())
                    .get(&seen.hash)
                    .copied(),
            };
            if remembered.is_some_and(|text| text != seen.text) {
                return Some(i);
            }
        }
        None
    }
}

/// A state read through a `Reader`: with a packing cache's reader, our chains packed as they
/// came in, or left empty where they read as the cache holds them; and what was digested of
/// every chain's hashed rules on the way, which the cache compares with what it remembers
/// (`LiveCache::start_from`).
#[derive(Debug)]
pub struct Fresh {
    live: Live,
    digests: BTreeMap<ChainKey, KnownChain>,
    /// Chains of ours that read exactly as the cache holds them, left empty in `live`: the
    /// cache's own (packed) chain is taken instead of packing the read's again.
    as_cached: BTreeSet<ChainKey>,
    /// Chains of ours the save printed in two places after the first had been left empty: what
    /// `live` holds of them is not the whole, so they are rewritten.
    unsure: BTreeSet<ChainKey>,
}

impl Fresh {
    /// Whether this read, through a reader of the cache that holds `cached` (with no reconcile
    /// since), holds exactly what `cached` does: every chain of ours as the cache holds it,
    /// every other chain and every ipset equal.
    fn reads_as(&self, cached: &Live) -> bool {
        // Chains are told apart by (family, table, name): as many, each matched, is all.
        self.unsure.is_empty()
            && self.live.ipsets == cached.ipsets
            && self.live.chains().count() == cached.chains().count()
            && self.live.chains().all(|(family, table, chain)| {
                self.as_cached
                    .contains(&(family, table, chain.name.clone()))
                    || cached.chain(family, table, &chain.name) == Some(chain)
            })
    }
}

/// How a cache reads the kernel (`LiveCache::reader`); `Send`, for a caller that reads on a
/// thread of its own.
#[derive(Debug, Clone)]
pub struct Reader {
    key: DigestKey,
    pack: bool,
    /// What the cache remembers of the chains it was made from.
    known: Arc<BTreeMap<ChainKey, KnownChain>>,
    /// The chains of ours the cache holds packed and as last read (not replayed since, not
    /// about to be repaired): one that reads the same again is taken from the cache.
    reusable: Arc<BTreeSet<ChainKey>>,
}

impl Reader {
    /// Read every table of every supported family, and our ipsets (`read_live`), digesting
    /// each chain as it comes in and, for a packing cache, packing our chains then: the read
    /// never holds a table's whole text, nor (packing) every rule's.
    pub fn read(&self, dp: &dyn Dataplane) -> Result<Fresh, SyncError> {
        read_with(dp, Some(self))
    }

    /// Whether a chain of ours read as `seen` (from `rules` rules) is the cache's chain: every
    /// rule hashed, and each hash and text digested as last read.
    fn as_cached(&self, key: &ChainKey, seen: Option<&KnownChain>, rules: usize) -> bool {
        let Some(seen) = seen else {
            return false;
        };
        seen.rules.len() == rules
            && self.reusable.contains(key)
            && self.known.get(key) == Some(seen)
    }
}

impl LiveCache {
    /// A cache holding a state just read (`read_live`), for a caller that read while it did
    /// other work; it remembers no rule texts.
    pub fn read(live: Live) -> LiveCache {
        LiveCache {
            live: Some(live),
            ..LiveCache::default()
        }
    }

    /// An empty cache that keeps our chains of the state packed: for a caller that keeps it
    /// between reconciles (the daemon), where that state would otherwise be its largest part.
    pub fn packing() -> LiveCache {
        LiveCache {
            pack: true,
            ..LiveCache::default()
        }
    }

    /// How to read for this cache (`start_from`).
    pub fn reader(&self) -> Reader {
        let judged = self.judged.as_ref();
        let reusable = self
            .live
            .iter()
            .flat_map(Live::chains)
            .filter(|(_, _, c)| c.packed.is_some() && !c.unverified)
            .map(|(family, table, c)| (family, table, c.name.clone()))
            .filter(|key| !judged.is_some_and(|j| j.chains.contains(key)))
            .collect();
        Reader {
            key: self.texts.key.clone(),
            pack: self.pack,
            known: Arc::clone(&self.texts.chains),
            reusable: Arc::new(reusable),
        }
    }

    /// Plan the next reconcile from `fresh`, a state read (with this cache's `reader`) since
    /// the cached one was taken: the daemon reads for its drift checks on a helper thread. The
    /// read's digests are compared with the remembered ones and learnt at once; a chain found
    /// changed keeps what was remembered of it, so a pass that fails to repair it still finds
    /// it changed on the next read.
    pub fn start_from(&mut self, fresh: Fresh) {
        let quiet = self.settled.is_some()
            && self
                .live
                .as_ref()
                .is_some_and(|cached| fresh.reads_as(cached));
        let (live, judged) = self.take_in(fresh);
        self.live = Some(live);
        self.judged = Some(judged);
        self.quiet = quiet;
    }

    /// When the state the last `start_from` took in reads exactly as the state the last
    /// reconcile found in sync (every chain, rule and ipset member), the report a reconcile of
    /// the same desired state would give, without one: nothing to plan, nothing to write. A
    /// caller that knows its desired state is unchanged since then (the daemon's drift check)
    /// skips rendering it. Once per `start_from`.
    pub fn quiet_check(&mut self, backend: Backend) -> Option<ReconcileReport> {
        if !std::mem::take(&mut self.quiet) {
            return None;
        }
        Some(ReconcileReport {
            overtaken: self.settled.clone().unwrap_or_default(),
            ..ReconcileReport::nothing(backend)
        })
    }

    /// Judge `fresh` against the remembered texts and learn it (`start_from`): its state, and
    /// the chains found changed in it.
    fn take_in(&mut self, fresh: Fresh) -> (Live, Suspects) {
        let Fresh {
            mut live,
            digests,
            as_cached,
            unsure,
        } = fresh;
        if let Some(cached) = &self.live {
            share_hashes(&mut live, cached);
        }
        if !as_cached.is_empty() {
            self.reuse(&mut live, &as_cached);
        }
        let mut judged = Suspects { chains: unsure };
        for (family, table, chain) in live.chains() {
            let key = (family, table, chain.name.clone());
            let Some(seen) = digests.get(&key) else {
                continue;
            };
            if let Some(at) = self.texts.changed(&key, seen) {
                let hash = chain.views().filter_map(|v| v.hash).nth(at);
                warn_changed(&key, hash.unwrap_or("?"));
                judged.chains.insert(key);
            }
        }
        self.texts.learn_read(digests, &judged);
        (live, judged)
    }

    /// Put the cache's chains in `live` for the chains `as_cached` names, which a read (through
    /// a reader of this cache, with no reconcile since) found as the cache holds them.
    fn reuse(&mut self, live: &mut Live, as_cached: &BTreeSet<ChainKey>) {
        let mut cached = self.live.take();
        for (family, table, name) in as_cached {
            let was = cached
                .as_mut()
                .and_then(|c| c.table_mut(*family, *table))
                .and_then(|t| t.chains.remove(name));
            let now = live
                .table_mut(*family, *table)
                .and_then(|t| t.chains.get_mut(name));
            match (was, now) {
                (Some(was), Some(now)) => *now = was,
                // Cannot happen (the reader was made from this cache); the chain then plans
                // as empty, and is written whole.
                _ => log::debug!("{name}: read as cached, but the cache no longer holds it"),
            }
        }
    }

    /// Forget the cached state (e.g. after the kernel may have been changed by someone else):
    /// the next reconcile reads first. The remembered rule texts stay.
    pub fn invalidate(&mut self) {
        self.live = None;
        self.judged = None;
        self.settled = None;
        self.quiet = false;
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_none()
    }

    /// Remember the rule texts of a state the kernel printed.
    fn learn(&mut self, live: &Live) {
        self.texts.learn(live, &Suspects::default());
    }

    /// Chains of `live` (a state not read through `reader`) holding a rule of ours whose text
    /// differs from the remembered one. A packed chain comes from the cache, not from a read:
    /// nothing new to compare.
    fn suspects(&self, live: &Live) -> Suspects {
        let mut suspects = Suspects::default();
        for (family, table, chain) in live.chains().filter(|(_, _, c)| c.packed.is_none()) {
            let key = (family, table, chain.name.clone());
            let Some(seen) = self.texts.key.chain(&chain.rules) else {
                continue;
            };
            if let Some(at) = self.texts.changed(&key, &seen) {
                let hash = chain.rules.iter().filter_map(|r| r.hash.as_deref()).nth(at);
                warn_changed(&key, hash.unwrap_or("?"));
                suspects.chains.insert(key);
            }
        }
        suspects
    }
}

/// Log a rule of ours found changed in place.
fn warn_changed((family, table, chain): &ChainKey, hash: &str) {
    log::warn!(
        "{} {} chain {chain}: rule cali:{hash} was changed in place (kept its hash): repairing",
        family_name(*family),
        table.as_str(),
    );
}

/// Families this dataplane can program, in write order.
fn families(dp: &dyn Dataplane) -> Vec<Family> {
    [Family::V4, Family::V6]
        .into_iter()
        .filter(|f| dp.supports(*f))
        .collect()
}

/// Read every table of every supported family, and our ipsets. The families are read at the
/// same time: each read is a save tool's child process plus its parse, independent of the
/// other's, and on nft one family's save alone takes seconds at 1,000 policies. Errors are
/// reported in family order, the ipsets' last, as a sequential read would.
pub fn read_live(dp: &dyn Dataplane) -> Result<Live, SyncError> {
    read_with(dp, None).map(|fresh| fresh.live)
}

/// `read_live`, digesting (and packing) as `reader` says when given.
fn read_with(dp: &dyn Dataplane, reader: Option<&Reader>) -> Result<Fresh, SyncError> {
    let (families, ipsets) = std::thread::scope(|scope| {
        let readers: Vec<_> = families(dp)
            .into_iter()
            .map(|family| scope.spawn(move || read_family(dp, family, reader)))
            .collect();
        let ipsets = read_ipsets(dp);
        let families: Vec<_> = readers.into_iter().map(crate::parallel::join).collect();
        (families, ipsets)
    });
    let mut fresh = Fresh {
        live: Live {
            tables: Vec::new(),
            ipsets: LiveIpsets::default(),
        },
        digests: BTreeMap::new(),
        as_cached: BTreeSet::new(),
        unsure: BTreeSet::new(),
    };
    for family in families {
        let read = family?;
        fresh.live.tables.push(read.state);
        fresh.digests.extend(read.digests);
        fresh.as_cached.extend(read.as_cached);
        fresh.unsure.extend(read.unsure);
    }
    fresh.live.ipsets = ipsets?;
    Ok(fresh)
}

/// One family's state as `read_family` read it.
struct FamilyRead {
    state: LiveState,
    digests: BTreeMap<ChainKey, KnownChain>,
    as_cached: BTreeSet<ChainKey>,
    unsure: BTreeSet<ChainKey>,
}

/// One family's tables, each chain handed as it completes to `reader` (when given) to digest
/// and, packing, to pack if it is ours, or to empty if it reads as the cache holds it.
fn read_family(
    dp: &dyn Dataplane,
    family: Family,
    reader: Option<&Reader>,
) -> Result<FamilyRead, SyncError> {
    let mut digests = BTreeMap::new();
    let mut as_cached = BTreeSet::new();
    let mut unsure = BTreeSet::new();
    let mut targets = Targets::default();
    let mut done = |table: TableName, chain: &mut LiveChain| {
        let Some(reader) = reader else {
            return;
        };
        let key = (family, table, chain.name.clone());
        // What reads as remembered is kept as the remembered copy: a read of an unchanged
        // kernel then holds no second set of digests (29 MB at 10,000 policies).
        let seen = reader
            .key
            .chain(&chain.rules)
            .map(|seen| match reader.known.get(&key) {
                Some(known) if *known == seen => known.clone(),
                _ => seen,
            });
        if reader.pack && plan::is_owned_chain(&chain.name) {
            if as_cached.remove(&key) {
                // Its rules so far were dropped: the chain is not known whole.
                unsure.insert(key.clone());
                chain.pack(&mut targets);
            } else if reader.as_cached(&key, seen.as_ref(), chain.rules.len()) {
                chain.rules = Vec::new();
                as_cached.insert(key.clone());
            } else {
                chain.pack(&mut targets);
            }
        }
        match seen {
            Some(known) => digests.insert(key, known),
            None => digests.remove(&key),
        };
    };
    let (tables, _) = save_family(dp, family, &mut done)?;
    Ok(FamilyRead {
        state: LiveState { family, tables },
        digests,
        as_cached,
        unsure,
    })
}

/// Every table of `family` as one save prints it, each chain handed to `done` as it completes,
/// and how many bytes the save printed.
fn save_family(
    dp: &dyn Dataplane,
    family: Family,
    done: &mut dyn FnMut(TableName, &mut LiveChain),
) -> Result<(BTreeMap<TableName, LiveTable>, usize), SyncError> {
    let mut saved = SavedTables::default();
    let mut bytes = 0;
    dp.save_tables(family, &mut |line| {
        bytes += line.len() + 1;
        saved.line(line, done)
    })
    .map_err(|source| SyncError::Read { family, source })?;
    let tables = saved.finish(done).map_err(|(table, e)| SyncError::Parse {
        family,
        table: table.as_str(),
        message: e.to_string(),
    })?;
    Ok((tables, bytes))
}

fn parse_table(family: Family, table: TableName, text: &str) -> Result<LiveTable, SyncError> {
    parse_save(text).map_err(|e| SyncError::Parse {
        family,
        table: table.as_str(),
        message: e.to_string(),
    })
}

fn read_ipsets(dp: &dyn Dataplane) -> Result<LiveIpsets, SyncError> {
    let text = dp.ipset_save().map_err(SyncError::ReadIpsets)?;
    parse_ipset_save(&text).map_err(|e| SyncError::ParseIpsets(e.to_string()))
}

/// The state after `plan` was written, and whether any of it was read back from the kernel
/// (not counting the ipsets). Each written table is replayed from its restore input
/// (`ruleset::replay`: an accepted restore holds exactly what it declared), then the hook
/// chains it wrote are read back where that is cheap (`read_back_hooks`); the ipsets are read
/// again when they changed (`ipset save` of our sets is cheap, and their members are not in the
/// plan's text in a form worth replaying). The families and the ipsets are handled at the same
/// time, as `read_live` reads them. With `pack`, each chain of ours is packed as soon as its
/// replay is complete (`LiveCache::packing`): a first apply then never holds every rule's text
/// at once.
fn after_write(
    dp: &dyn Dataplane,
    mut live: Live,
    plan: &Plan,
    pack: bool,
) -> Result<(Live, bool), SyncError> {
    let (done, ipsets) = std::thread::scope(|scope| {
        let ipsets = (!plan.ipsets.is_empty()).then(|| scope.spawn(|| read_ipsets(dp)));
        let done = crate::parallel::map(live.tables.iter_mut(), |state| {
            after_write_family(dp, state, plan, pack)
        });
        (done, ipsets.map(crate::parallel::join))
    });
    let mut read_back = false;
    for family in done {
        read_back |= family?;
    }
    if let Some(ipsets) = ipsets {
        live.ipsets = ipsets?;
    }
    Ok((live, read_back))
}

/// `after_write` for one family's state. A table whose replay failed, and one whose hook
/// chains are to be read back, is read from the kernel; when every table of the family as
/// replayed is small (`TABLE_READ_MAX_RULES` rules in all), one save of the family reads all
/// of those at once (a save of a few hundred rules costs about its process start, and reading
/// table by table took three saves a family on legacy, a listing per hook chain on nft), else
/// each is read as `read_back_hooks` and `save_table` say.
fn after_write_family(
    dp: &dyn Dataplane,
    state: &mut LiveState,
    plan: &Plan,
    pack: bool,
) -> Result<bool, SyncError> {
    let family = state.family;
    let mut targets = Targets::default();
    // Written tables the kernel is to be asked about, and whether their replay went through.
    let mut to_read: Vec<(&TablePlan, bool)> = Vec::new();
    for t in plan
        .tables
        .iter()
        .filter(|t| t.family == family && !t.is_empty())
    {
        let table = state.tables.entry(t.table).or_default();
        let filled: HashMap<&str, &Arc<ChainHashes>> = t.restore_input.filled().collect();
        let mut done = |chain: &mut LiveChain| {
            if pack && plan::is_owned_chain(&chain.name) {
                chain.pack(&mut targets);
                if let Some(hashes) = filled.get(chain.name.as_str()) {
                    chain.share_hashes(hashes.text());
                }
            }
        };
        match replay_with(table, &t.restore_input, &mut done) {
            // `table` stays replayed as far as the input went: every chain the input declares
            // comes first, so it still says which chains should hold something of ours.
            Err(e) => {
                log::warn!(
                    "{} {}: {e}; reading the table back instead",
                    family_name(family),
                    t.table.as_str()
                );
                to_read.push((t, false));
            }
            Ok(()) if !t.hooks.is_empty() => to_read.push((t, true)),
            Ok(()) => {}
        }
    }
    if to_read.is_empty() {
        return Ok(false);
    }
    let rules: usize = state
        .tables
        .values()
        .flat_map(|t| t.chains.values())
        .map(LiveChain::len)
        .sum();
    if rules <= TABLE_READ_MAX_RULES {
        let (mut read, bytes) = save_family(dp, family, &mut |_, _| {})?;
        for (t, _) in to_read {
            let table = state.tables.entry(t.table).or_default();
            let now = read.remove(&t.table).unwrap_or_default();
            check_trustworthy(t, table, &now, &written_chains(t), bytes)?;
            *table = now;
        }
        return Ok(true);
    }
    let mut read_back = false;
    for (t, replayed) in to_read {
        let table = state.tables.entry(t.table).or_default();
        if !replayed {
            *table = save_table(dp, family, t, table)?;
            read_back = true;
            continue;
        }
        read_back |= read_back_hooks(dp, family, t, table)?;
        if pack {
            // Our chains were packed as they were replayed; what was read back is learnt
            // (`RuleDigests::learn`) first, and packed after.
            pack_owned(table, |c| c.unverified);
        }
    }
    Ok(read_back)
}

/// At most this many chains of one table are read back one by one (on nft a chain costs ~20 ms
/// to list, a 50,000-rule table ~1.7 s to save).
const CHAIN_READS_MAX: usize = 8;

/// A table of at most this many rules is saved whole to read its hook chains back where the
/// backend cannot list single chains cheaply (legacy fetches the whole table from the kernel
/// even for `-S CHAIN`); a larger one is left as replayed, since its read would cost as much
/// as the write.
const TABLE_READ_MAX_RULES: usize = 5_000;

/// Read back the hook chains `t` wrote in the kernel's chains (`INPUT`, `PREROUTING`, …) into
/// `table`, as replayed: these are the chains other tools write to as well, and the read also
/// catches a save tool that exits 0 yet shows nothing of what was just written (planning from
/// it again would insert the hooks once more on every apply). True when something was read.
fn read_back_hooks(
    dp: &dyn Dataplane,
    family: Family,
    t: &TablePlan,
    table: &mut LiveTable,
) -> Result<bool, SyncError> {
    let hooks: Vec<&str> = t.hooks.iter().map(String::as_str).collect();
    let listed = if hooks.len() <= CHAIN_READS_MAX {
        dp.save_chains(family, t.table, &hooks).unwrap_or_else(|e| {
            log::debug!("listing chains {hooks:?}: {e}");
            None
        })
    } else {
        None
    };
    if let Some(text) = listed {
        let mut read = parse_table(family, t.table, &text)?;
        check_trustworthy(t, table, &read, &hooks, text.len())?;
        check_none_unseen(t, table, &read)?;
        for hook in hooks {
            match read.chains.remove(hook) {
                Some(now) => table.chains.insert(hook.to_string(), now),
                None => table.chains.remove(hook),
            };
        }
        return Ok(true);
    }
    let rules: usize = table.chains.values().map(|c| c.len()).sum();
    if rules > TABLE_READ_MAX_RULES {
        return Ok(false);
    }
    *table = save_table(dp, family, t, table)?;
    Ok(true)
}

/// `t`'s table as the kernel now holds it, checked against `expected` (the replayed table).
fn save_table(
    dp: &dyn Dataplane,
    family: Family,
    t: &TablePlan,
    expected: &LiveTable,
) -> Result<LiveTable, SyncError> {
    let text = dp
        .save(family, t.table)
        .map_err(|source| SyncError::Read { family, source })?;
    let read = parse_table(family, t.table, &text)?;
    check_trustworthy(t, expected, &read, &written_chains(t), text.len())?;
    Ok(read)
}

/// The chains `t` wrote something into.
fn written_chains(t: &TablePlan) -> Vec<&str> {
    t.create
        .iter()
        .chain(&t.rewrite)
        .chain(&t.hooks)
        .map(String::as_str)
        .collect()
}

/// After a successful write the read must show something of ours in at least one of the
/// `chains` that `expected` (the replayed table) holds something of ours in: a chain of ours,
/// or a hashed rule in a kernel chain. A save that exits 0 yet prints nothing (or another
/// table) would make every retry plan a fresh install and insert the hook rules again.
/// `bytes`: how much the save printed (for the error).
fn check_trustworthy(
    t: &TablePlan,
    expected: &LiveTable,
    seen: &LiveTable,
    chains: &[&str],
    bytes: usize,
) -> Result<(), SyncError> {
    let holds_ours = |table: &LiveTable, name: &str| {
        table
            .chains
            .get(name)
            .is_some_and(|c| plan::is_owned_chain(name) || c.rules.iter().any(|r| r.hash.is_some()))
    };
    let mut wanted = chains.iter().filter(|c| holds_ours(expected, c)).peekable();
    if wanted.peek().is_none() || wanted.any(|c| holds_ours(seen, c)) {
        return Ok(());
    }
    Err(SyncError::UntrustedSave {
        family: t.family,
        table: t.table.as_str(),
        bytes,
    })
}

/// The hook chains listed after a write must not hold more rules of ours than the replay of
/// the pre-write read expects: if they do, that read (a save tool, while the listing is another
/// program) missed rules that were there, and planning from it again would insert the hooks
/// once more on every retry.
fn check_none_unseen(
    t: &TablePlan,
    expected: &LiveTable,
    seen: &LiveTable,
) -> Result<(), SyncError> {
    let ours = |table: &LiveTable, name: &str| {
        table
            .chains
            .get(name)
            .map_or(0, |c| c.rules.iter().filter(|r| r.hash.is_some()).count())
    };
    match t.hooks.iter().find(|h| ours(seen, h) > ours(expected, h)) {
        None => Ok(()),
        Some(chain) => Err(SyncError::UnseenRules {
            family: t.family,
            table: t.table.as_str(),
            chain: chain.clone(),
        }),
    }
}

/// The desired state per supported family. A supported family without a desired ruleset (IPv6
/// with `ipv6Support: false`) is planned as empty, so hostfw's old state there is removed; a
/// desired family the host cannot program is dropped with a warning. Borrowed when `desired`
/// already is exactly that (the usual case): a copy of 10,000 policies' rules costs hundreds of
/// megabytes.
fn desired_for<'a>(dp: &dyn Dataplane, desired: &'a [Ruleset]) -> Cow<'a, [Ruleset]> {
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
    let wanted = families(dp);
    let given: Vec<Family> = desired.iter().map(|r| r.family).collect();
    if given == wanted {
        return Cow::Borrowed(desired);
    }
    Cow::Owned(
        wanted
            .into_iter()
            .map(|family| {
                desired
                    .iter()
                    .find(|r| r.family == family)
                    .cloned()
                    .unwrap_or_else(|| empty_ruleset(family))
            })
            .collect(),
    )
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
    Ok(plan_against(
        &desired,
        &live,
        dp,
        &Suspects::default(),
        &HashMemo::default(),
    ))
}

fn plan_against(
    desired: &[Ruleset],
    live: &Live,
    dp: &dyn Dataplane,
    suspects: &Suspects,
    memo: &HashMemo,
) -> Plan {
    plan::plan_with_suspects(
        desired,
        &live.tables,
        &live.ipsets,
        PlanOptions {
            nft: dp.backend() == Backend::Nft,
        },
        suspects,
        memo,
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
/// `LiveCache`); on success the cache holds the state the reconcile left, on failure it is
/// emptied.
pub fn reconcile_cached(
    desired: &[Ruleset],
    dp: &dyn Dataplane,
    opts: &SyncOptions,
    cache: &mut LiveCache,
) -> Result<ReconcileReport, SyncError> {
    let desired = desired_for(dp, desired);
    cache.settled = None;
    cache.quiet = false;
    // Out of the cache while the passes borrow it; put back whatever the outcome.
    let memo = std::mem::take(&mut cache.hashes);
    let outcome = run_passes(dp, opts, Check::Written, cache, |live, suspects| {
        plan_against(&desired, live, dp, suspects, &memo)
    });
    cache.hashes = memo;
    let mut report = outcome?;
    if let Some(seen) = &cache.live {
        report.overtaken = plan::overtaken_jumps(&desired, &seen.tables);
    }
    if report.in_sync() && !opts.dry_run {
        cache.settled = Some(report.overtaken.clone());
    }
    if report.hooks_fixed > 0 {
        for o in &report.overtaken {
            log::warn!("{o}");
        }
    }
    Ok(report)
}

/// Remove every chain, hook rule and ipset hostfw owns, and verify nothing of ours is left.
/// Sets the other iptables backend's rules still use are left: ipsets are shared by both
/// backends, and the kernel refuses to destroy a set in use.
pub fn flush(dp: &dyn Dataplane, opts: &SyncOptions) -> Result<ReconcileReport, SyncError> {
    let shared = dp.sets_used_by_other_backend();
    run_passes(
        dp,
        opts,
        Check::Everything,
        &mut LiveCache::default(),
        |live, _| {
            let mut ipsets = live.ipsets.clone();
            ipsets.sets.retain(|name, _| !shared.contains(name));
            plan::flush_plan(&live.tables, &ipsets)
        },
    )
}

/// What a pass reads after its write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The hook chains, where cheap (`after_write`): what a reconcile needs.
    Written,
    /// Everything, as planning reads it: `flush` promises nothing of ours is left.
    Everything,
}

fn run_passes(
    dp: &dyn Dataplane,
    opts: &SyncOptions,
    check: Check,
    cache: &mut LiveCache,
    make_plan: impl Fn(&Live, &Suspects) -> Plan,
) -> Result<ReconcileReport, SyncError> {
    let started = Instant::now();
    // Each pass counts itself.
    let mut report = ReconcileReport {
        attempts: 0,
        ..ReconcileReport::nothing(dp.backend())
    };
    let mut backoff = opts.initial_backoff;
    loop {
        report.attempts += 1;
        // Only the first pass may trust the cache; a retry always reads.
        let start = cache.live.take();
        let judged = cache.judged.take();
        match pass(
            dp,
            opts,
            check,
            (start, judged),
            cache,
            &make_plan,
            &mut report,
        ) {
            Ok(mut seen) => {
                // A dry run may have seen drift it did not repair: nothing to learn from it.
                if !opts.dry_run {
                    cache.learn(&seen);
                }
                if cache.pack {
                    for table in seen.tables.iter_mut().flat_map(|s| s.tables.values_mut()) {
                        pack_owned(table, |_| true);
                    }
                }
                cache.live = Some(seen);
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

/// Let each packed chain of `live` keep the hashes of the same chain in `cached` when they are
/// the same: the cache's were shared with the plan when the chain was written (after a write,
/// the first read packs every written chain again).
fn share_hashes(live: &mut Live, cached: &Live) {
    for (family, table, chain) in live.chains_mut() {
        let known = cached.chain(family, table, &chain.name);
        if let Some(p) = known.and_then(|c| c.packed.as_deref()) {
            chain.share_hashes(p.hashes());
        }
    }
}

/// Pack the chains of ours in `table` that `which` picks (`LiveChain::pack`).
fn pack_owned(table: &mut LiveTable, which: impl Fn(&LiveChain) -> bool) {
    let mut targets = Targets::default();
    for chain in table
        .chains
        .values_mut()
        .filter(|c| plan::is_owned_chain(&c.name) && which(c))
    {
        chain.pack(&mut targets);
    }
}

/// One read → plan → write → check pass, starting from `start` instead of a read when given
/// (with the chains found changed in it when that was judged as it came in); `cache` supplies
/// the remembered rule texts. Returns the state it last saw (replayed after a write).
fn pass(
    dp: &dyn Dataplane,
    opts: &SyncOptions,
    check: Check,
    start: (Option<Live>, Option<Suspects>),
    cache: &mut LiveCache,
    make_plan: &impl Fn(&Live, &Suspects) -> Plan,
    report: &mut ReconcileReport,
) -> Result<Live, SyncError> {
    let (live, suspects) = match start {
        (Some(live), Some(judged)) => (live, judged),
        (Some(live), None) => {
            let suspects = cache.suspects(&live);
            (live, suspects)
        }
        (None, _) => {
            let fresh = cache.reader().read(dp)?;
            cache.take_in(fresh)
        }
    };
    let planning = Instant::now();
    let plan = make_plan(&live, &suspects);
    log::debug!("planned in {} ms", planning.elapsed().as_millis());
    if report.attempts == 1 {
        for (family, table, kept) in plan.kept() {
            log::warn!(
                "{} {table}: keeping chain {} (emptied) instead of deleting it: still referenced by foreign chain {}; remove that jump and hostfw deletes it",
                family_name(family),
                kept.chain,
                kept.referrers.join(", "),
                table = table.as_str()
            );
        }
    }
    let outcome = if opts.dry_run || plan.is_empty() {
        Ok(live)
    } else {
        write_and_check(dp, &plan, live, check, cache.pack, make_plan, report)
    };
    // Moved, not cloned: at 10,000 policies the restore input alone is hundreds of megabytes.
    if report.attempts == 1 {
        report.plan = plan;
    }
    outcome
}

/// Write `plan`, take the state it left (`after_write`) and, when part of it was read back,
/// check nothing is left to do there.
fn write_and_check(
    dp: &dyn Dataplane,
    plan: &Plan,
    live: Live,
    check: Check,
    pack: bool,
    make_plan: &impl Fn(&Live, &Suspects) -> Plan,
    report: &mut ReconcileReport,
) -> Result<Live, SyncError> {
    write(dp, plan, &live, report)?;
    let checking = Instant::now();
    let (after, read_back) = match check {
        Check::Written => after_write(dp, live, plan, pack)?,
        Check::Everything => (read_live(dp)?, true),
    };
    log::debug!(
        "state after the write taken in {} ms",
        checking.elapsed().as_millis()
    );
    if !read_back {
        return Ok(after);
    }
    let residual = make_plan(&after, &Suspects::default());
    if !residual.is_empty() {
        return Err(SyncError::Verify {
            attempts: report.attempts,
            residual: residual.to_string(),
        });
    }
    Ok(after)
}

fn write(
    dp: &dyn Dataplane,
    plan: &Plan,
    before: &Live,
    report: &mut ReconcileReport,
) -> Result<(), SyncError> {
    let failed = |source| SyncError::Write {
        attempts: report.attempts,
        source,
    };
    if !plan.ipsets.before.is_empty() {
        dp.ipset_restore(&plan.ipsets.before).map_err(failed)?;
        report.ipset_restores += 1;
    }
    let mut written: Vec<(Family, TableName)> = Vec::new();
    for table in &plan.tables {
        if table.restore_input.is_empty() {
            continue;
        }
        let restoring = Instant::now();
        let restored = dp.restore_script(table.family, table.table, &table.restore_input);
        log::debug!(
            "{} {}: restore of {} lines in {} ms",
            family_name(table.family),
            table.table.as_str(),
            table.restore_input.lines(),
            restoring.elapsed().as_millis()
        );
        if let Err(source) = restored {
            put_back(dp, before, &written, !plan.ipsets.before.is_empty());
            return Err(SyncError::Write {
                attempts: report.attempts,
                source,
            });
        }
        written.push((table.family, table.table));
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

/// A later table of the pass failed: put the `written` tables back as `before` held them (one
/// transaction each, as `confirm` rolls back), then the set members the pass changed. Tables
/// first: until then the old rules of the unwritten tables meet the new members, the window
/// the plan already accepts while it writes. Best effort: a failure here is logged, and the
/// retry plans from whatever the kernel then holds.
fn put_back(dp: &dyn Dataplane, before: &Live, written: &[(Family, TableName)], sets: bool) {
    if written.is_empty() && !sets {
        return;
    }
    let snapshot = Snapshot {
        tables: written
            .iter()
            .filter_map(|(family, table)| {
                let state = before.tables.iter().find(|s| s.family == *family)?;
                let live = state.tables.get(table).cloned().unwrap_or_default();
                Some(rollback::saved_table(*family, *table, &live))
            })
            .collect(),
        ipsets: ipsets_text(&before.ipsets),
    };
    let result = (|| -> Result<(), String> {
        let mut now = Live {
            tables: Vec::new(),
            ipsets: read_ipsets(dp).map_err(|e| e.to_string())?,
        };
        for family in written.iter().map(|(f, _)| *f).collect::<BTreeSet<_>>() {
            let mut state = read_family(dp, family, None)
                .map_err(|e| e.to_string())?
                .state;
            state
                .tables
                .retain(|table, _| written.contains(&(family, *table)));
            now.tables.push(state);
        }
        let rollback = rollback::rollback_plan(&snapshot, &now, dp.backend() == Backend::Nft)
            .map_err(|e| e.to_string())?;
        for (family, table, input) in &rollback.tables {
            dp.restore(*family, *table, input)
                .map_err(|e| e.to_string())?;
            log::warn!(
                "{} {}: put back as it was before this pass, because a later table failed",
                family_name(*family),
                table.as_str()
            );
        }
        for input in [&rollback.ipsets_before, &rollback.ipsets_after] {
            if !input.is_empty() {
                dp.ipset_restore(input).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        log::error!(
            "a table write failed and the tables written before it could not be put back \
             (the retry will plan from what the kernel holds): {e}"
        );
    }
}

/// `ipset save` text of the sets as read (kinds hostfw does not create are left out: a
/// rollback never creates them either).
fn ipsets_text(sets: &LiveIpsets) -> String {
    let mut out = String::new();
    for set in sets.sets.values() {
        let (Some(set_type), Some(family), Some(max_elements)) =
            (set.set_type, set.family, set.max_elements)
        else {
            continue;
        };
        let ipset = Ipset {
            name: set.name.clone(),
            set_type,
            family,
            max_elements,
            members: BTreeSet::new(),
        };
        write_create(&mut out, &set.name, &ipset);
        for member in &set.members {
            write_add(&mut out, &set.name, member);
        }
    }
    out
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

    const SET: &str = "cali40s:testsetAAAAAAAAAAAAAAAA";

    fn rule(matches: Vec<Match>, action: Action) -> Rule {
        Rule {
            matches: matches.into(),
            action,
            comments: Default::default(),
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
                ports: vec![PortSpec::Single(port)].into(),
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
                ]
                .into(),
            },
        );
        filter.chains.insert(
            "cali-pi-test".into(),
            Chain {
                name: "cali-pi-test".into(),
                rules: [set_rule].into(),
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

    fn with_hook_position(mut ruleset: Ruleset, position: HookPosition) -> Ruleset {
        for table in &mut ruleset.tables {
            for hook in &mut table.hooks {
                hook.position = position;
            }
        }
        ruleset
    }

    /// The text of our hook rule in the fake's IPv4 INPUT chain.
    fn our_input_hook(fake: &FakeDataplane) -> String {
        fake.rules(Family::V4, TableName::Filter, "INPUT")
            .unwrap()
            .into_iter()
            .find(|r| r.contains("cali:"))
            .unwrap()
    }

    fn both(port: u16) -> Vec<Ruleset> {
        vec![
            desired(Family::V4, port, &["203.0.113.0/24"]),
            desired(Family::V6, port, &[]),
        ]
    }

    /// `rulesets` with a filter chain of ours long enough that no family is saved whole after
    /// a write (`TABLE_READ_MAX_RULES`): its hooks are listed, or left as replayed.
    fn bulky(mut rulesets: Vec<Ruleset>) -> Vec<Ruleset> {
        for ruleset in &mut rulesets {
            let filter = ruleset
                .tables
                .iter_mut()
                .find(|t| t.name == TableName::Filter)
                .unwrap();
            let rules: Vec<Rule> = (0..=TABLE_READ_MAX_RULES as u16)
                .map(|i| rule(tcp_port(1000 + i), Action::Accept))
                .collect();
            filter.chains.insert(
                "cali-fill".into(),
                Chain {
                    name: "cali-fill".into(),
                    rules: rules.into(),
                },
            );
        }
        rulesets
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
        // After the failed restore no other table is written: the set the pass created is put
        // back (destroyed), then the next pass reads and writes the same table again.
        let next_restore = first_restore
            + 1
            + calls[first_restore + 1..]
                .iter()
                .position(Call::is_restore)
                .unwrap();
        assert_eq!(calls[next_restore].stdin, calls[first_restore].stdin);
        assert!(calls[first_restore..next_restore].iter().any(
            |c| c.is_ipset_restore() && c.stdin.as_deref() == Some(&format!("destroy {SET}\n"))
        ));
        assert!(diff(&both(22), &fake).unwrap().is_empty());
    }

    /// `desired(family, port, members)` plus a raw chain dropping `untracked_drop` untracked.
    fn with_raw_drop(mut ruleset: Ruleset, untracked_drop: Option<&str>) -> Ruleset {
        let raw = ruleset
            .tables
            .iter_mut()
            .find(|t| t.name == TableName::Raw)
            .unwrap();
        if let Some(source) = untracked_drop {
            raw.chains.insert(
                "cali-PREROUTING".into(),
                Chain {
                    name: "cali-PREROUTING".into(),
                    rules: vec![rule(
                        vec![Match::Source {
                            negated: false,
                            net: source.parse().unwrap(),
                        }],
                        Action::Drop,
                    )]
                    .into(),
                },
            );
            raw.hooks.push(HookRule {
                kernel_chain: "PREROUTING".into(),
                position: HookPosition::Insert,
                rule: rule(Vec::new(), Action::Jump("cali-PREROUTING".into())),
            });
        }
        ruleset
    }

    /// The old state drops 198.51.100.9 untracked (raw), the new one drops it in filter.
    fn raw_drop_moved_to_filter() -> (Vec<Ruleset>, Vec<Ruleset>) {
        let old = vec![
            with_raw_drop(
                desired(Family::V4, 22, &["203.0.113.0/24"]),
                Some("198.51.100.9/32"),
            ),
            desired(Family::V6, 22, &[]),
        ];
        let new = vec![
            desired(Family::V4, 2222, &["203.0.113.0/24", "198.51.100.9/32"]),
            desired(Family::V6, 2222, &[]),
        ];
        (old, new)
    }

    /// The attack (`raw_drop_moved_to_filter`): raw is written first; when filter then fails,
    /// raw must not stay new (neither table would drop the source): every failing table of the
    /// pass leaves the old state.
    #[test]
    fn a_later_table_failing_puts_the_earlier_ones_back() {
        let (old, new) = raw_drop_moved_to_filter();
        for failing in [TableName::Filter, TableName::Mangle] {
            let fake = FakeDataplane::default();
            reconcile(&old, &fake, &quick()).unwrap();
            let mut new = new.clone();
            if failing == TableName::Mangle {
                // A mangle chain in the new state: the pass writes raw, then fails mangle.
                let mangle = new[0]
                    .tables
                    .iter_mut()
                    .find(|t| t.name == TableName::Mangle)
                    .unwrap();
                mangle.chains.insert(
                    "cali-mangle-x".into(),
                    Chain {
                        name: "cali-mangle-x".into(),
                        rules: [rule(Vec::new(), Action::Return)].into(),
                    },
                );
            }
            for _ in 0..5 {
                fake.inject(Op::RestoreOf(failing), Fault::Fail("injected".into()));
            }
            let err = reconcile(&new, &fake, &quick()).unwrap_err();
            assert!(matches!(err, SyncError::Write { attempts: 5, .. }), "{err}");
            assert!(
                diff(&old, &fake).unwrap().is_empty(),
                "{failing:?} failed and the kernel is not the old state: {}",
                diff(&old, &fake).unwrap()
            );
            // The raw table was written (and put back) on every pass.
            let raw_writes = fake
                .restores()
                .iter()
                .filter(|c| c.stdin.as_deref().is_some_and(|i| i.starts_with("*raw")))
                .count();
            assert!(raw_writes >= 10, "{raw_writes}");
        }
    }

    /// The daemon's cache keeps our chains packed between reconciles: a pass planned from it
    /// that fails puts the old rules back from the packed texts, and the next one converges.
    #[test]
    fn a_pass_from_a_packed_cache_that_fails_puts_the_old_rules_back() {
        let (old, new) = raw_drop_moved_to_filter();
        let fake = FakeDataplane::default();
        let mut cache = LiveCache::packing();
        reconcile_cached(&old, &fake, &quick(), &mut cache).unwrap();
        cache.invalidate();
        assert!(reconcile_cached(&old, &fake, &quick(), &mut cache)
            .unwrap()
            .in_sync());
        let owned = owned_chains(&cache);
        assert!(owned.len() >= 3, "{owned:?}");
        assert!(
            owned
                .iter()
                .all(|c| c.packed.is_some() && c.rules.is_empty()),
            "{owned:?}"
        );

        for _ in 0..5 {
            fake.inject(
                Op::RestoreOf(TableName::Filter),
                Fault::Fail("injected".into()),
            );
        }
        let err = reconcile_cached(&new, &fake, &quick(), &mut cache).unwrap_err();
        assert!(matches!(err, SyncError::Write { attempts: 5, .. }), "{err}");
        assert!(
            diff(&old, &fake).unwrap().is_empty(),
            "{}",
            diff(&old, &fake).unwrap()
        );
        reconcile_cached(&new, &fake, &quick(), &mut cache).unwrap();
        assert!(diff(&new, &fake).unwrap().is_empty());
    }

    /// A save that exits 0 and prints nothing: one write, then a refusal, never a second
    /// insertion of the hook rules (small tables, read back with one save per family, on
    /// both backends).
    #[test]
    fn an_empty_save_after_a_write_stops_instead_of_reinserting_hooks() {
        for backend in [Backend::Legacy, Backend::Nft] {
            let fake = FakeDataplane::new(backend);
            reconcile(&both(22), &fake, &quick()).unwrap();
            refused_when_blind(&fake, &both(2222), |e| {
                matches!(e, SyncError::UntrustedSave { .. })
            });
        }
    }

    /// The save tool goes blind after a first write: a reconcile of `rulesets` fails with an
    /// error `expected` accepts, saying the save cannot be trusted, and the hook rule was
    /// inserted once more at most, with no retry.
    fn refused_when_blind(
        fake: &FakeDataplane,
        rulesets: &[Ruleset],
        expected: impl Fn(&SyncError) -> bool,
    ) {
        fake.blind_saves();
        let err = reconcile(rulesets, fake, &quick()).unwrap_err();
        assert!(expected(&err), "{err}");
        assert!(err.to_string().contains("cannot be trusted"), "{err}");
        assert_eq!(
            input_rule_count(fake),
            2,
            "{:?}: one extra hook at most, no retry",
            fake.backend()
        );
    }

    /// After a write into small tables each family is read back with one save of all its
    /// tables, on both backends: no save per table, no listing per hook chain.
    #[test]
    fn small_families_are_read_back_with_one_save_each() {
        for backend in [Backend::Legacy, Backend::Nft] {
            let fake = FakeDataplane::new(backend);
            let report = reconcile(&both(22), &fake, &quick()).unwrap();
            assert!(report.hooks_fixed > 0 && report.restores >= 2);
            let calls = fake.calls();
            let after_write = &calls[calls.iter().position(Call::is_restore).unwrap()..];
            let mut reads: Vec<String> = after_write
                .iter()
                .filter(|c| !c.is_restore() && !c.is_ipset_restore())
                .map(|c| c.argv.join(" "))
                .collect();
            reads.sort();
            let be = backend.as_str();
            assert_eq!(
                reads,
                [
                    format!("ip6tables-{be}-save"),
                    "ipset save".to_string(),
                    format!("iptables-{be}-save"),
                ],
                "{backend:?}"
            );
            assert!(diff(&both(22), &fake).unwrap().is_empty());
        }
    }

    /// Another tool flushing our chain right after our write is drift: the reconcile that
    /// wrote does not read it back, the next read finds and repairs it, from a cache only once
    /// the cache is invalidated (the daemon's post-write check).
    #[test]
    fn a_concurrent_writer_is_drift_for_the_next_read() {
        for fresh in [LiveCache::default, LiveCache::packing] {
            a_concurrent_writer_is_drift_for_the_next_read_with(fresh());
        }
    }

    fn a_concurrent_writer_is_drift_for_the_next_read_with(mut cache: LiveCache) {
        let fake = FakeDataplane::default();
        reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        fake.interfere(
            Family::V4,
            TableName::Filter,
            "*filter\n:cali-pi-test - -\nCOMMIT\n",
        );
        let report = reconcile_cached(&both(2222), &fake, &quick(), &mut cache).unwrap();
        assert_eq!(report.attempts, 1);
        assert!(!diff(&both(2222), &fake).unwrap().is_empty());
        assert!(reconcile_cached(&both(2222), &fake, &quick(), &mut cache)
            .unwrap()
            .in_sync());
        cache.invalidate();
        let report = reconcile_cached(&both(2222), &fake, &quick(), &mut cache).unwrap();
        assert_eq!(report.restores, 1);
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

    /// A write that touched no hook chain reads nothing back: the state it left is replayed
    /// from its input, and a fresh read agrees.
    #[test]
    fn a_write_without_hooks_reads_nothing_back() {
        for backend in [Backend::Legacy, Backend::Nft] {
            let fake = FakeDataplane::new(backend);
            let mut cache = LiveCache::default();
            reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
            fake.clear_calls();
            let v4_changed = vec![
                desired(Family::V4, 2222, &["203.0.113.0/24", "198.51.100.64/26"]),
                desired(Family::V6, 22, &[]),
            ];
            let report = reconcile_cached(&v4_changed, &fake, &quick(), &mut cache).unwrap();
            assert_eq!((report.restores, report.ipset_restores), (1, 1));
            let calls = fake.calls();
            let after_write = &calls[calls.iter().position(Call::is_restore).unwrap()..];
            let reads: Vec<String> = after_write
                .iter()
                .filter(|c| !c.is_restore() && !c.is_ipset_restore())
                .map(|c| c.argv.join(" "))
                .collect();
            assert_eq!(
                reads,
                ["ipset save"],
                "{backend:?}: only the changed set is re-read"
            );
            let replayed = cache.live.clone().unwrap();
            let read = read_live(&fake).unwrap();
            let memo = HashMemo::default();
            assert!(
                plan_against(&v4_changed, &replayed, &fake, &Suspects::default(), &memo).is_empty()
            );
            assert!(diff(&v4_changed, &fake).unwrap().is_empty());
            for (replayed, read) in replayed.tables.iter().zip(&read.tables) {
                for (table, t) in &read.tables {
                    let names = |t: &LiveTable| t.chains.keys().cloned().collect::<Vec<_>>();
                    assert_eq!(
                        names(&replayed.tables[table]),
                        names(t),
                        "{backend:?} {table:?}"
                    );
                }
            }
        }
    }

    /// Hooks written on nft into tables too big to save whole are listed back chain by chain;
    /// a blind tool is still caught.
    #[test]
    fn on_nft_hooks_written_are_listed_back() {
        let fake = FakeDataplane::new(Backend::Nft);
        let report = reconcile(&bulky(both(22)), &fake, &quick()).unwrap();
        assert_eq!(report.attempts, 1);
        assert!(report.hooks_fixed > 0);
        let calls = fake.calls();
        let after_write = &calls[calls.iter().position(Call::is_restore).unwrap()..];
        let reads: Vec<&Call> = after_write
            .iter()
            .filter(|c| !c.is_restore() && !c.is_ipset_restore())
            .collect();
        assert!(reads
            .iter()
            .any(|c| c.argv.join(" ") == "iptables-nft-list -t filter -S INPUT"));
        for call in reads {
            let line = call.argv.join(" ");
            assert!(line.contains(" -S ") || line == "ipset save", "{line}");
            assert!(
                !line.contains(" -S cali-"),
                "our own chains are not read back: {line}"
            );
        }
        assert!(diff(&bulky(both(22)), &fake).unwrap().is_empty());

        // The save tool goes blind, the listing (another program) does not: the hooks listed
        // after the write are more than the blind read expected, and the pass stops.
        refused_when_blind(&fake, &bulky(both(2222)), |e| {
            matches!(e, SyncError::UnseenRules { .. })
        });
    }

    #[test]
    fn a_cached_state_saves_the_first_read_and_a_stale_one_is_repaired() {
        for fresh in [LiveCache::default, LiveCache::packing] {
            a_cached_state_saves_the_first_read_and_a_stale_one_is_repaired_with(fresh());
        }
    }

    fn a_cached_state_saves_the_first_read_and_a_stale_one_is_repaired_with(mut cache: LiveCache) {
        let fake = FakeDataplane::default();
        fake.external_restore(
            Family::V4,
            TableName::Filter,
            "*filter\n-A INPUT -s 198.51.100.9/32 -j DROP\nCOMMIT\n",
        );
        reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        assert!(!cache.is_empty());

        // A change planned from the cache: no read before the write.
        fake.clear_calls();
        let report = reconcile_cached(&both(2222), &fake, &quick(), &mut cache).unwrap();
        assert_eq!(report.attempts, 1);
        let calls = fake.calls();
        assert!(calls[0].is_restore(), "first call was {:?}", calls[0].argv);
        assert!(diff(&both(2222), &fake).unwrap().is_empty());

        // A plan from a stale cache that the kernel refuses (a hook rule deleted by value that
        // is no longer there) makes the pass retry from a fresh read.
        fake.external_restore(
            Family::V4,
            TableName::Filter,
            &format!("*filter\n-D INPUT {}\nCOMMIT\n", our_input_hook(&fake)),
        );
        let append = vec![
            with_hook_position(
                desired(Family::V4, 22, &["203.0.113.0/24"]),
                HookPosition::Append,
            ),
            desired(Family::V6, 22, &[]),
        ];
        let report = reconcile_cached(&append, &fake, &quick(), &mut cache).unwrap();
        assert_eq!(report.attempts, 2);
        assert!(diff(&append, &fake).unwrap().is_empty());
        reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();

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
        // At most one read (the families are read side by side, so the other family's saves
        // and the ipset save still run), and no second pass.
        let one_read = FakeDataplane::default();
        read_live(&one_read).expect("an empty fake reads");
        assert!(fake.calls().len() <= one_read.calls().len());
    }

    /// A rule as read: its hash, if any, and its text.
    type SavedRule<'a> = (Option<&'a str>, &'a str);

    /// A live state with one filter chain `name` of IPv4 holding `rules`.
    fn one_chain(name: &str, rules: &[SavedRule]) -> Live {
        let chain = LiveChain {
            name: name.into(),
            policy: None,
            unverified: false,
            packed: None,
            rules: rules
                .iter()
                .map(|(hash, text)| LiveRule {
                    hash: hash.map(str::to_string),
                    text: text.to_string(),
                    ..LiveRule::default()
                })
                .collect(),
        };
        let mut table = LiveTable::default();
        table.chains.insert(name.into(), chain);
        Live {
            tables: vec![LiveState {
                family: Family::V4,
                tables: BTreeMap::from([(TableName::Filter, table)]),
            }],
            ipsets: LiveIpsets::default(),
        }
    }

    /// A hook chain listed after the write with more rules of ours than the replay of the
    /// pre-write read expects means that read missed them: stop, do not retry.
    #[test]
    fn hook_rules_the_read_missed_stop_the_pass() {
        let table = |rules: &[SavedRule]| {
            let live = one_chain("INPUT", rules);
            live.tables[0].tables[&TableName::Filter].clone()
        };
        let hook = (Some("Cz_u1IQiXIMmKD4c"), "-j cali-INPUT");
        let t = TablePlan {
            family: Family::V4,
            table: TableName::Filter,
            create: Vec::new(),
            rewrite: Vec::new(),
            delete: Vec::new(),
            hooks: vec!["INPUT".into()],
            kept: Vec::new(),
            restore_input: Default::default(),
        };
        let expected = table(&[hook, (None, "-j DROP")]);
        assert!(check_none_unseen(&t, &expected, &table(&[hook, (None, "-j DROP")])).is_ok());
        assert!(check_none_unseen(&t, &expected, &table(&[(None, "-j DROP")])).is_ok());
        let err =
            check_none_unseen(&t, &expected, &table(&[hook, hook, (None, "-j DROP")])).unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("chain INPUT"), "{err}");
    }

    /// The digests the cache keeps instead of the rule texts name exactly the chains a kept
    /// copy of the texts would: a changed text under a known hash wherever the rule moved,
    /// never an unchanged, unknown or unhashed rule; a hash held twice compares with its last.
    #[test]
    fn remembered_digests_find_exactly_the_changed_rules() {
        let suspects = |known: &Live, now: &Live| {
            let mut cache = LiveCache::default();
            cache.learn(known);
            cache
                .suspects(now)
                .chains
                .into_iter()
                .map(|(_, _, chain)| chain)
                .collect::<Vec<_>>()
        };
        let known = one_chain(
            "INPUT",
            &[
                (None, "-j f2b"),
                (Some("h1"), "-p tcp -j A"),
                (Some("h2"), "-j B"),
            ],
        );
        // (what, the chain now as (our hash, rule text), whether the chain is a suspect)
        type Case<'a> = (&'a str, &'a [SavedRule<'a>], bool);
        let cases: [Case; 7] = [
            (
                "same",
                &[
                    (None, "-j f2b"),
                    (Some("h1"), "-p tcp -j A"),
                    (Some("h2"), "-j B"),
                ],
                false,
            ),
            (
                "reordered",
                &[(Some("h2"), "-j B"), (Some("h1"), "-p tcp -j A")],
                false,
            ),
            (
                "changed in place",
                &[(Some("h1"), "-p udp -j A"), (Some("h2"), "-j B")],
                true,
            ),
            (
                "changed and moved",
                &[(Some("h2"), "-j B"), (Some("h1"), "-p udp -j A")],
                true,
            ),
            (
                "a new hash",
                &[(Some("h3"), "-j ACCEPT"), (Some("h2"), "-j B")],
                false,
            ),
            (
                "foreign rule changed",
                &[(None, "-j other"), (Some("h2"), "-j B")],
                false,
            ),
            (
                "last rule changed",
                &[(Some("h1"), "-p tcp -j A"), (Some("h2"), "-j C")],
                true,
            ),
        ];
        for (what, rules, changed) in cases {
            let found = suspects(&known, &one_chain("INPUT", rules));
            assert_eq!(
                found,
                if changed {
                    vec!["INPUT".to_string()]
                } else {
                    vec![]
                },
                "{what}"
            );
        }
        // Another chain of the same name elsewhere is not compared.
        assert!(suspects(&known, &one_chain("OUTPUT", &[(Some("h1"), "-j X")])).is_empty());
        let twice = one_chain("INPUT", &[(Some("h1"), "-j A"), (Some("h1"), "-j B")]);
        assert!(suspects(&twice, &one_chain("INPUT", &[(Some("h1"), "-j B")])).is_empty());
        assert_eq!(
            suspects(&twice, &one_chain("INPUT", &[(Some("h1"), "-j A")])),
            ["INPUT"]
        );
    }

    /// A rule of ours rewritten in place with the same hash and target but another match: the
    /// daemon's cache remembers the verified text and repairs the chain on its next refresh.
    #[test]
    fn a_rule_changed_under_its_hash_is_repaired_from_the_remembered_text() {
        for fresh in [LiveCache::default, LiveCache::packing] {
            a_rule_changed_under_its_hash_is_repaired_from_the_remembered_text_with(fresh());
        }
    }

    /// The daemon's drift check plans from a read taken on a helper thread
    /// (`LiveCache::start_from`), which judges and packs it before the reconcile: the same
    /// repair, also when the first write of it fails and the retry reads afresh.
    #[test]
    fn a_rule_changed_under_its_hash_is_repaired_from_a_read_judged_as_it_came_in() {
        for failures in [0, 1] {
            let fake = FakeDataplane::default();
            let mut cache = LiveCache::packing();
            reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
            // A check learns the texts as the kernel prints them.
            settle_with(&mut cache, &fake, 22);
            let original = widen_first_rule_of_cali_input(&fake);
            cache.start_from(cache.reader().read(&fake).unwrap());
            let owned = owned_chains(&cache);
            assert!(
                owned
                    .iter()
                    .all(|c| c.packed.is_some() && c.rules.is_empty()),
                "the read was not packed as it came in: {owned:?}"
            );
            for _ in 0..failures {
                fake.inject(
                    Op::RestoreOf(TableName::Filter),
                    Fault::Fail("injected".into()),
                );
            }
            let report = reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
            assert_eq!(report.attempts, 1 + failures);
            assert_eq!(
                fake.rules(Family::V4, TableName::Filter, "cali-INPUT")
                    .unwrap(),
                original,
                "after {failures} failed write(s)"
            );
        }
    }

    /// A drift check that reads our chains as the cache holds them takes the cache's packed
    /// chains instead of packing the read's again; a chain someone appended a rule to is read,
    /// packed and repaired.
    #[test]
    fn a_check_reading_what_the_cache_holds_keeps_the_cached_chains() {
        let fake = FakeDataplane::default();
        let mut cache = LiveCache::packing();
        reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        settle_with(&mut cache, &fake, 22);
        let before = cache.live.clone().unwrap();
        let owned: BTreeSet<ChainKey> = before
            .chains()
            .filter(|(_, _, c)| plan::is_owned_chain(&c.name) && c.packed.is_some())
            .map(|(f, t, c)| (f, t, c.name.clone()))
            .collect();
        assert!(owned.len() >= 4, "{owned:?}");
        let again = cache.reader().read(&fake).unwrap();
        assert_eq!(again.as_cached, owned);
        let (family, table, name) = owned.first().unwrap();
        let left = again.live.chain(*family, *table, name).unwrap();
        assert!(left.rules.is_empty() && left.packed.is_none(), "{left:?}");
        cache.start_from(again);
        assert_eq!(cache.live.as_ref().map(|l| &l.tables), Some(&before.tables));
        assert!(reconcile_cached(&both(22), &fake, &quick(), &mut cache)
            .unwrap()
            .in_sync());

        fake.external_restore(
            Family::V4,
            TableName::Filter,
            "*filter\n-A cali-INPUT -j ACCEPT\nCOMMIT\n",
        );
        let appended = cache.reader().read(&fake).unwrap();
        let key = (Family::V4, TableName::Filter, "cali-INPUT".to_string());
        assert!(!appended.as_cached.contains(&key));
        assert_eq!(appended.as_cached.len(), owned.len() - 1);
        cache.start_from(appended);
        let report = reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        assert_eq!(report.plan.tables[2].rewrite, ["cali-INPUT"]);
        let rules = fake
            .rules(Family::V4, TableName::Filter, "cali-INPUT")
            .unwrap();
        assert!(rules.iter().all(|r| r.contains("cali:")), "{rules:?}");

        // A chain just rewritten holds what was written, not what the kernel printed: the next
        // read packs it again.
        let report = reconcile_cached(&both(23), &fake, &quick(), &mut cache).unwrap();
        assert_eq!(report.plan.tables[2].rewrite, ["cali-INPUT"]);
        let after_edit = cache.reader().read(&fake).unwrap();
        assert!(!after_edit.as_cached.contains(&key));
        assert!(after_edit.as_cached.contains(&(
            Family::V4,
            TableName::Filter,
            "cali-pi-test".to_string()
        )));
    }

    /// A check whose read holds exactly what the last in-sync reconcile found is answered
    /// without planning; any difference anywhere (a foreign rule, one of our hook rules, an
    /// ipset member), a write since, or a stale cache is planned as usual.
    #[test]
    fn a_check_reading_the_settled_state_again_is_quiet() {
        let fake = FakeDataplane::default();
        let mut cache = LiveCache::packing();
        let check = |cache: &mut LiveCache| {
            cache.start_from(cache.reader().read(&fake).unwrap());
            cache.quiet_check(Backend::Nft)
        };
        reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        settle_with(&mut cache, &fake, 22);
        let quiet = check(&mut cache).expect("nothing changed");
        assert!(quiet.in_sync() && quiet.plan.is_empty());
        // Once per read.
        assert!(cache.quiet_check(Backend::Nft).is_none());
        assert!(check(&mut cache).is_some(), "still nothing changed");

        let changes: [&dyn Fn(); 3] = [
            &|| {
                fake.external_restore(
                    Family::V4,
                    TableName::Filter,
                    "*filter\n-A INPUT -s 198.51.100.9/32 -j DROP\nCOMMIT\n",
                )
            },
            &|| {
                let hook = our_input_hook(&fake);
                fake.external_restore(
                    Family::V4,
                    TableName::Filter,
                    &format!("*filter\n-D INPUT {hook}\nCOMMIT\n"),
                )
            },
            &|| fake.external_ipset_restore(&format!("add {SET} 198.51.100.77\n")),
        ];
        for (i, change) in changes.iter().enumerate() {
            change();
            assert!(check(&mut cache).is_none(), "change {i} went unseen");
            // What the reconcile then finds in sync (a foreign rule) or repairs.
            reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
            settle_with(&mut cache, &fake, 22);
            assert!(check(&mut cache).is_some(), "after change {i}");
        }

        // A reconcile that wrote leaves nothing settled, and a stale cache neither.
        reconcile_cached(&both(23), &fake, &quick(), &mut cache).unwrap();
        assert!(check(&mut cache).is_none());
        settle_with(&mut cache, &fake, 23);
        assert!(check(&mut cache).is_some());
        cache.invalidate();
        assert!(check(&mut cache).is_none());
    }

    /// A read that finds a chain's rules as remembered keeps the remembered digests, not a copy.
    #[test]
    fn digests_read_as_remembered_are_the_remembered_ones() {
        let fake = FakeDataplane::new(Backend::Nft);
        let mut cache = LiveCache::packing();
        reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        cache.start_from(cache.reader().read(&fake).unwrap());
        let before = Arc::clone(&cache.texts.chains);
        assert!(before.len() >= 4, "{before:?}");
        cache.start_from(cache.reader().read(&fake).unwrap());
        assert_eq!(cache.texts.chains.len(), before.len());
        for (key, now) in cache.texts.chains.iter() {
            assert!(
                Arc::ptr_eq(&now.rules, &before[key].rules),
                "{key:?} is a copy"
            );
        }
    }

    /// The packed chains of a state just written keep the plan's hashes rather than copies of
    /// their own, and the first read afterwards, which packs every written chain again, keeps
    /// the same ones. (On nft, with tables too big to be saved whole after the write, which
    /// packs them afresh: `after_write_family`.)
    #[test]
    fn packed_chains_share_the_plans_hashes_through_a_write_and_a_read() {
        let fake = FakeDataplane::new(Backend::Nft);
        let mut cache = LiveCache::packing();
        let hashes = |cache: &LiveCache| -> Vec<(ChainKey, Arc<str>)> {
            cache
                .live
                .iter()
                .flat_map(Live::chains)
                .filter_map(|(f, t, c)| {
                    let p = c.packed.as_deref()?;
                    Some(((f, t, c.name.clone()), Arc::clone(p.hashes())))
                })
                .collect()
        };
        reconcile_cached(&bulky(both(22)), &fake, &quick(), &mut cache).unwrap();
        let written = hashes(&cache);
        assert!(written.len() >= 4, "{written:?}");
        for (key, h) in &written {
            // The plan's memo, the cache and `written`.
            assert_eq!(Arc::strong_count(h), 3, "{key:?} keeps a copy of its own");
        }
        cache.start_from(cache.reader().read(&fake).unwrap());
        let read = hashes(&cache);
        assert_eq!(read.len(), written.len());
        for ((key, before), (again, now)) in written.iter().zip(&read) {
            assert_eq!(key, again);
            assert!(Arc::ptr_eq(before, now), "{key:?} read back as a copy");
        }
    }

    /// A drift check's read, then a reconcile of `both(port)` that finds it in sync.
    fn settle_with(cache: &mut LiveCache, fake: &FakeDataplane, port: u16) {
        cache.start_from(cache.reader().read(fake).unwrap());
        assert!(reconcile_cached(&both(port), fake, &quick(), cache)
            .unwrap()
            .in_sync());
    }

    /// A save that prints a chain of ours again after it had read as the cache holds it: the
    /// chain is not known whole, and is rewritten.
    #[test]
    fn a_chain_printed_twice_after_reading_as_cached_is_rewritten() {
        let fake = FakeDataplane::default();
        let mut cache = LiveCache::packing();
        reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        cache.start_from(cache.reader().read(&fake).unwrap());
        reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        let twice = PrintsTwice(&fake);
        let fresh = cache.reader().read(&twice).unwrap();
        let key = (Family::V4, TableName::Filter, "cali-INPUT".to_string());
        assert!(fresh.unsure.contains(&key) && !fresh.as_cached.contains(&key));
        cache.start_from(fresh);
        let report = reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        assert_eq!(report.plan.tables[2].rewrite, ["cali-INPUT"]);
        assert_eq!(
            fake.rules(Family::V4, TableName::Filter, "cali-INPUT")
                .unwrap()
                .len(),
            2
        );
    }

    /// The fake, but its IPv4 filter save prints the first rule of `cali-INPUT` once more at
    /// the end of the table.
    struct PrintsTwice<'a>(&'a FakeDataplane);

    impl Dataplane for PrintsTwice<'_> {
        fn save(&self, family: Family, table: TableName) -> Result<String, DataplaneError> {
            let text = self.0.save(family, table)?;
            if (family, table) != (Family::V4, TableName::Filter) {
                return Ok(text);
            }
            let first = text
                .lines()
                .find(|l| l.starts_with("-A cali-INPUT "))
                .expect("cali-INPUT has rules")
                .to_string();
            Ok(text.replace("COMMIT\n", &format!("{first}\nCOMMIT\n")))
        }
        fn restore(&self, f: Family, t: TableName, input: &str) -> Result<(), DataplaneError> {
            self.0.restore(f, t, input)
        }
        fn ipset_save(&self) -> Result<String, DataplaneError> {
            self.0.ipset_save()
        }
        fn ipset_restore(&self, input: &str) -> Result<(), DataplaneError> {
            self.0.ipset_restore(input)
        }
        fn backend(&self) -> Backend {
            self.0.backend()
        }
        fn supports(&self, family: Family) -> bool {
            self.0.supports(family)
        }
    }

    /// Rewrite the first rule of `cali-INPUT` in place as someone with `iptables -R` could:
    /// port 22 widened to every port, its hash and target kept. Returns the rules before.
    fn widen_first_rule_of_cali_input(fake: &FakeDataplane) -> Vec<String> {
        let original = fake
            .rules(Family::V4, TableName::Filter, "cali-INPUT")
            .unwrap();
        let tampered = original[0].replace("22", "1:65535");
        assert_ne!(tampered, original[0]);
        fake.external_restore(
            Family::V4,
            TableName::Filter,
            &format!(
                "*filter\n:cali-INPUT - [0:0]\n-A cali-INPUT {tampered}\n-A cali-INPUT {}\nCOMMIT\n",
                original[1]
            ),
        );
        original
    }

    /// The non-empty chains of ours in `cache`'s state.
    fn owned_chains(cache: &LiveCache) -> Vec<&LiveChain> {
        cache
            .live
            .iter()
            .flat_map(Live::chains)
            .map(|(_, _, c)| c)
            .filter(|c| plan::is_owned_chain(&c.name) && !c.is_empty())
            .collect()
    }

    fn a_rule_changed_under_its_hash_is_repaired_from_the_remembered_text_with(
        mut cache: LiveCache,
    ) {
        let fake = FakeDataplane::default();
        reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        let original = widen_first_rule_of_cali_input(&fake);
        // Hashes alone see nothing wrong.
        assert!(diff(&both(22), &fake).unwrap().is_empty());
        cache.invalidate();
        let report = reconcile_cached(&both(22), &fake, &quick(), &mut cache).unwrap();
        assert_eq!(report.plan.tables[2].rewrite, ["cali-INPUT"]);
        assert_eq!(
            fake.rules(Family::V4, TableName::Filter, "cali-INPUT")
                .unwrap(),
            original
        );
    }
}
