//! The plan: the minimal change from the live tables and sets to the desired ruleset, as
//! `iptables-restore` and `ipset restore` input plus a human-readable summary (`hostfw diff`).
//! Pure: the dataplane reads the kernel, this module decides, the dataplane writes.
//!
//! Ownership (never touch anything else): chains named `cali-*`; in every other chain, rules
//! carrying a `cali:` hash comment; sets in the exact shapes `ipset::is_owned_set` accepts.
//! A chain of ours that a foreign rule still jumps to is emptied but kept (and reported), never
//! deleted: `-X` would fail the whole table's transaction and wedge every later apply.
//!
//! Tampering: a rule of ours is in sync only when its hash AND its target (`-j`/`-g` word, as
//! the kernel prints it) are what we render, so `iptables -R … --comment "cali:<hash>" -j
//! ACCEPT` is repaired. Full rule text, which the kernel prints differently from how it was
//! written, is compared by the caller against the text it verified earlier ([`Suspects`]).
//!
//! Why no intermediate state is more open than both the old and the new state:
//! * Each table's change is ONE `iptables-restore` transaction, and the kernel swaps a table's
//!   ruleset atomically at `COMMIT` (legacy: one table blob; nft: one netlink batch), so packets
//!   see either the old or the new table, never a half-written chain or a missing hook.
//!   (With `nft: true`, chain deletions go in a second transaction; between the two commits the
//!   doomed chains are already empty and unreferenced, so they match nothing.)
//! * Sets are created and filled BEFORE any table refers to them (a rule can never point at a
//!   missing or half-filled set) and destroyed only AFTER every table stopped referring to them.
//!   A set whose metadata changes is rebuilt aside and swapped in one `ipset swap`, so its
//!   referencing rules see the old or the new membership, never an empty set.
//! * Tables are written raw, mangle, filter. Cross-table decisions travel via the accept mark
//!   bit, which the static chains honour identically in the old and new state, so a packet that
//!   is accepted early by a new raw/mangle rule is also accepted by the new state.
//! * Known window (inherent to updating sets in place, as Felix does): a set's membership is
//!   updated before the rules, so for one exec the OLD rules see the NEW members. This only opens
//!   something if a member is added to a set that the old rules allow and the new rules no
//!   longer reference; set names are derived from their selector, so that requires a policy
//!   change and a membership change in the same reconcile.

use super::hash::hook_hashes;
use super::ipset::{normalize_member, write_add, write_create, write_del};
use super::memo::{ChainHashes, HashMemo};
use super::packed::target_part;
use super::restore::{kernel_chain_rank, RestoreBuilder, RestoreScript};
use super::save::{LiveChain, LiveTable};
use super::{Action, Chain, Family, Ipset, LiveIpsets, Match, Rule, Ruleset, Table, TableName};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Prefix of every chain we own.
pub const OWNED_CHAIN_PREFIX: &str = "cali-";

/// True for a chain name we own.
pub fn is_owned_chain(name: &str) -> bool {
    name.starts_with(OWNED_CHAIN_PREFIX)
}

/// What the kernel holds for one family: every table that was read (a missing table is treated
/// as not loaded, i.e. empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveState {
    pub family: Family,
    pub tables: BTreeMap<TableName, LiveTable>,
}

/// The change to one table of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePlan {
    pub family: Family,
    pub table: TableName,
    /// Chains to create (sorted).
    pub create: Vec<String>,
    /// Existing chains to flush and refill because their hash list differs (sorted).
    pub rewrite: Vec<String>,
    /// Our chains no longer wanted (sorted).
    pub delete: Vec<String>,
    /// Kernel chains whose hook rules are deleted and re-added.
    pub hooks: Vec<String>,
    /// Our chains no longer wanted that foreign rules still jump to: emptied, not deleted.
    pub kept: Vec<KeptChain>,
    /// `iptables-restore --noflush` input; empty when the table is in sync.
    pub restore_input: RestoreScript,
}

/// A chain of ours that cannot be deleted yet, and the foreign chains whose rules jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptChain {
    pub chain: String,
    pub referrers: Vec<String>,
}

/// Chains whose live rules differ from the text last verified for the same hashes (found by
/// the caller, which remembers that text): they are rewritten (ours) or have their hook rules
/// fixed (kernel chains) even though every hash matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suspects {
    pub chains: BTreeSet<(Family, TableName, String)>,
}

impl TablePlan {
    /// True when the table needs no write.
    pub fn is_empty(&self) -> bool {
        self.restore_input.is_empty()
    }
}

/// The change to our ipsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpsetPlan {
    /// Sets to create (sorted).
    pub create: Vec<String>,
    /// Sets whose members change (sorted).
    pub update: Vec<String>,
    /// Sets rebuilt because type, family or maxelem differ (sorted).
    pub replace: Vec<String>,
    /// Sets no longer wanted (sorted).
    pub destroy: Vec<String>,
    /// `ipset restore` input to run before any iptables write.
    pub before: String,
    /// `ipset restore` input to run after every iptables write.
    pub after: String,
}

impl IpsetPlan {
    /// True when no ipset command is needed.
    pub fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty()
    }
}

/// Everything to do, in order: `ipsets.before`, every `tables[i].restore_input`, `ipsets.after`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub ipsets: IpsetPlan,
    /// Per family (v4 first), raw, mangle, filter.
    pub tables: Vec<TablePlan>,
}

impl Plan {
    /// True when the kernel already matches the desired state.
    pub fn is_empty(&self) -> bool {
        self.ipsets.is_empty() && self.tables.iter().all(TablePlan::is_empty)
    }
}

/// Knobs of the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// iptables-nft backend: chain deletions go in a second transaction, because older
    /// iptables-nft-restore only sees references as they were at the start of a transaction.
    pub nft: bool,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            writeln!(f, "in sync: nothing to change")?;
            return self.write_kept(f);
        }
        for (verb, names) in [
            ("create", &self.ipsets.create),
            ("update members of", &self.ipsets.update),
            ("replace", &self.ipsets.replace),
            ("destroy", &self.ipsets.destroy),
        ] {
            for n in names {
                writeln!(f, "ipset: {verb} {n}")?;
            }
        }
        for t in &self.tables {
            let label = format!("{} {}", t.family.label(), t.table.as_str());
            for (verb, names) in [
                ("create chain", &t.create),
                ("rewrite chain", &t.rewrite),
                ("delete chain", &t.delete),
                ("fix hook rules in", &t.hooks),
            ] {
                for n in names {
                    writeln!(f, "{label}: {verb} {n}")?;
                }
            }
        }
        self.write_kept(f)
    }
}

impl Plan {
    /// One line per chain kept because a foreign rule jumps to it.
    fn write_kept(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.tables {
            for k in &t.kept {
                writeln!(
                    f,
                    "{} {}: keeping chain {} (emptied) instead of deleting it: still referenced by foreign chain {}; remove that jump and hostfw deletes it",
                    t.family.label(),
                    t.table.as_str(),
                    k.chain,
                    k.referrers.join(", ")
                )?;
            }
        }
        Ok(())
    }

    /// Every kept chain, as `(family, table, chain, referrers)`, for warnings.
    pub fn kept(&self) -> impl Iterator<Item = (Family, TableName, &KeptChain)> {
        self.tables
            .iter()
            .flat_map(|t| t.kept.iter().map(move |k| (t.family, t.table, k)))
    }
}

/// Plans the change from `live` to `desired`. Families present in `live` but absent from
/// `desired` are emptied of everything we own; tables absent from a desired ruleset likewise.
pub fn plan(
    desired: &[Ruleset],
    live: &[LiveState],
    live_ipsets: &LiveIpsets,
    options: PlanOptions,
) -> Plan {
    plan_with_suspects(
        desired,
        live,
        live_ipsets,
        options,
        &Suspects::default(),
        &HashMemo::default(),
    )
}

/// `plan`, also repairing the `suspects` (chains whose rule text was tampered with), taking
/// the rule hashes of chains unchanged since the last plan from `memo`.
pub fn plan_with_suspects(
    desired: &[Ruleset],
    live: &[LiveState],
    live_ipsets: &LiveIpsets,
    options: PlanOptions,
    suspects: &Suspects,
    memo: &HashMemo,
) -> Plan {
    let desired_sets: BTreeMap<&str, &Ipset> = desired
        .iter()
        .flat_map(|r| r.ipsets.values())
        .map(|s| (s.name.as_str(), s))
        .collect();
    let (ipsets, renamed) = plan_ipsets(&desired_sets, live_ipsets);

    let families: BTreeSet<Family> = desired
        .iter()
        .map(|r| r.family)
        .chain(live.iter().map(|l| l.family))
        .collect();
    let empty_live = LiveTable::default();
    let shared = Shared {
        renamed_sets: &renamed,
        options,
        suspects,
        memo,
    };
    let plan_family = |family: Family| -> Vec<TablePlan> {
        let want = desired.iter().find(|r| r.family == family);
        let have = live.iter().find(|l| l.family == family);
        let tables = TableName::OWNED
            .into_iter()
            .map(|name| {
                let desired_table = want.and_then(|r| r.tables.iter().find(|t| t.name == name));
                let live_table = have
                    .and_then(|l| l.tables.get(&name))
                    .unwrap_or(&empty_live);
                plan_table(family, name, desired_table, live_table, &shared)
            })
            .collect();
        memo.finish(family);
        tables
    };
    // The families share nothing but what they read: each plans on its own thread.
    let tables = crate::parallel::map(families, plan_family)
        .into_iter()
        .flatten()
        .collect();
    Plan { ipsets, tables }
}

/// Removes everything we own: every `cali-` chain, every `cali:`-hashed rule elsewhere, every
/// `cali4*`/`cali6*` set. Deletions always go in a second transaction (safe on both backends).
pub fn flush_plan(live: &[LiveState], live_ipsets: &LiveIpsets) -> Plan {
    plan(&[], live, live_ipsets, PlanOptions { nft: true })
}

/// True when the live chain's hash list equals `hashes` exactly and every rule's target is the
/// one rendered (a rule without our hash in our chain is drift and forces a rewrite).
fn chain_in_sync(live: &LiveChain, chain: &Chain, hashes: &ChainHashes) -> bool {
    live.len() == hashes.len()
        && live
            .views()
            .zip(hashes.iter())
            .zip(&chain.rules)
            .all(|((r, h), want)| r.hash == Some(h) && same_target(r.text, want))
}

/// The target of a rule as `iptables-save` prints it: the last `-j`/`-g` and the word after it
/// (`packed::target_part`; `--jump`/`--goto` come back short).
fn printed_target(text: &str) -> Option<(&str, &str)> {
    let mut words = target_part(text).split_whitespace();
    let verb = match words.next()? {
        "-j" | "--jump" => "-j",
        _ => "-g",
    };
    Some((verb, words.next()?))
}

/// True when the printed rule `text` has the target `want` renders.
fn same_target(text: &str, want: &Rule) -> bool {
    let printed = printed_target(text);
    let expected: &[(&str, &str)] = match &want.action {
        Action::Accept => &[("-j", "ACCEPT")],
        Action::Drop => &[("-j", "DROP")],
        Action::Reject => &[("-j", "REJECT")],
        Action::Return => &[("-j", "RETURN")],
        Action::Jump(t) => return printed == Some(("-j", &**t)),
        Action::Goto(t) => return printed == Some(("-g", &**t)),
        Action::SetMark { .. } | Action::SetMaskedMark { .. } => &[("-j", "MARK")],
        Action::Log { .. } => &[("-j", "LOG")],
        // The kernel prints the NOTRACK target back as `CT --notrack`.
        Action::NoTrack => &[("-j", "NOTRACK"), ("-j", "CT")],
        Action::None => return printed.is_none(),
    };
    printed.is_some_and(|p| expected.contains(&p))
}

/// A foreign jump in a kernel chain that hostfw's inserted hook now precedes: whatever hostfw
/// accepts (failsafe ports, allowed traffic) never reaches that chain, so e.g. fail2ban's bans
/// stop applying to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overtaken {
    pub family: Family,
    pub table: TableName,
    /// The kernel chain (`INPUT`).
    pub chain: String,
    /// The foreign chain jumped to (`f2b-sshd`).
    pub target: String,
    /// Whose it looks like: `fail2ban`, `CrowdSec`, `sshguard` or `the admin`.
    pub owner: &'static str,
}

impl fmt::Display for Overtaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: hostfw's hook is inserted above the jump to {} ({}): traffic hostfw \
             accepts (failsafe ports, allowed policy) never reaches it, so its verdicts (bans) do \
             not apply; set `chainInsertMode: Append` in FelixConfiguration, or keep those \
             sources out of the failsafe nets",
            self.family.label(),
            self.table.as_str(),
            self.chain,
            self.target,
            self.owner
        )
    }
}

/// The foreign jumps to user chains that `desired`'s insert-mode hooks go above, in `live`.
pub fn overtaken_jumps(desired: &[Ruleset], live: &[LiveState]) -> Vec<Overtaken> {
    let mut out = Vec::new();
    for ruleset in desired {
        let Some(state) = live.iter().find(|l| l.family == ruleset.family) else {
            continue;
        };
        for table in &ruleset.tables {
            let Some(lt) = state.tables.get(&table.name) else {
                continue;
            };
            for (chain, hooks) in hook_hashes(&table.hooks) {
                let Some(lc) = lt.chains.get(chain).filter(|_| !hooks.top.is_empty()) else {
                    continue;
                };
                for rule in lc.rules.iter().filter(|r| r.hash.is_none()) {
                    let Some((_, target)) = printed_target(&rule.text) else {
                        continue;
                    };
                    if is_owned_chain(target) || !lt.chains.contains_key(target) {
                        continue;
                    }
                    let owner = if target.starts_with("f2b-") || target.starts_with("fail2ban") {
                        "fail2ban"
                    } else if target.to_ascii_lowercase().starts_with("crowdsec") {
                        "CrowdSec"
                    } else if target.to_ascii_lowercase().starts_with("sshguard") {
                        "sshguard"
                    } else {
                        "the admin"
                    };
                    out.push(Overtaken {
                        family: ruleset.family,
                        table: table.name,
                        chain: chain.to_string(),
                        target: target.to_string(),
                        owner,
                    });
                }
            }
        }
    }
    out
}

/// Non-owned chains whose foreign rules (no hash of ours) jump or go to `target`.
fn foreign_referrers(live: &LiveTable, target: &str) -> Vec<String> {
    live.chains
        .values()
        .filter(|c| !is_owned_chain(&c.name))
        .filter(|c| {
            c.rules.iter().filter(|r| r.hash.is_none()).any(|r| {
                let words: Vec<&str> = r.text.split_whitespace().collect();
                words
                    .windows(2)
                    .any(|w| matches!(w[0], "-j" | "-g" | "--jump" | "--goto") && w[1] == target)
            })
        })
        .map(|c| c.name.clone())
        .collect()
}

fn references_any(chain: &Chain, sets: &BTreeSet<String>) -> bool {
    !sets.is_empty()
        && chain.rules.iter().any(|r| {
            r.matches
                .iter()
                .any(|m| matches!(m, Match::Set { name, .. } if sets.contains(&**name)))
        })
}

/// What the plans of every table share.
struct Shared<'a> {
    /// Sets rebuilt under a new name: every chain referring to them is rewritten.
    renamed_sets: &'a BTreeSet<String>,
    options: PlanOptions,
    suspects: &'a Suspects,
    memo: &'a HashMemo,
}

fn plan_table(
    family: Family,
    name: TableName,
    desired: Option<&Table>,
    live: &LiveTable,
    shared: &Shared,
) -> TablePlan {
    let Shared {
        renamed_sets,
        options,
        suspects,
        memo,
    } = *shared;
    let suspect = |chain: &str| suspects.chains.contains(&(family, name, chain.to_string()));
    let suspect: &dyn Fn(&str) -> bool = &suspect;
    let mut create = Vec::new();
    let mut rewrite = Vec::new();
    let mut to_write: Vec<(&Chain, std::sync::Arc<ChainHashes>)> = Vec::new();

    // Desired chains must be ours; a foreign name here would make us flush someone else's
    // chain, so such chains are left out rather than written.
    let desired_chains = desired
        .into_iter()
        .flat_map(|t| t.chains.values())
        .filter(|c| is_owned_chain(&c.name));
    for chain in desired_chains {
        let hashes = memo.hashes(family, name, chain);
        match live.chains.get(&chain.name) {
            None => create.push(chain.name.clone()),
            Some(lc)
                if !chain_in_sync(lc, chain, &hashes)
                    || references_any(chain, renamed_sets)
                    || suspect(&chain.name) =>
            {
                rewrite.push(chain.name.clone())
            }
            Some(_) => continue,
        }
        to_write.push((chain, hashes));
    }
    let mut delete = Vec::new();
    let mut kept = Vec::new();
    let mut flush_only = Vec::new();
    for (name, chain) in &live.chains {
        if !is_owned_chain(name) || desired.is_some_and(|t| t.chains.contains_key(name)) {
            continue;
        }
        let referrers = foreign_referrers(live, name);
        if referrers.is_empty() {
            delete.push(name.clone());
            continue;
        }
        // Emptied (an empty chain returns at once: the foreign jump then has no effect), kept.
        if !chain.is_empty() {
            flush_only.push(name.clone());
        }
        kept.push(KeptChain {
            chain: name.clone(),
            referrers,
        });
    }

    let mut b = RestoreBuilder::new();
    b.start(name);
    // 1. `:chain - [0:0]` creates new chains, and flushes rewritten and doomed ones (a doomed
    //    chain's own jumps must go before `-X` of anything it references).
    for n in create
        .iter()
        .chain(&rewrite)
        .chain(&delete)
        .chain(&flush_only)
    {
        b.chain_line(n);
    }
    // 2. Contents of new and rewritten chains.
    for (chain, hashes) in &to_write {
        b.fill(&chain.name, &chain.rules, hashes);
    }
    // 3. Hook rules in kernel (and any other foreign) chains.
    let hooks = plan_hooks(&mut b, desired, live, suspect);
    // 4. Chain deletions, once nothing references them any more.
    if !delete.is_empty() {
        if options.nft {
            b.commit();
            b.start(name);
            for n in &delete {
                b.chain_line(n);
            }
        }
        for n in &delete {
            b.delete_chain(n);
        }
    }
    b.commit();
    TablePlan {
        family,
        table: name,
        create,
        rewrite,
        delete,
        hooks,
        kept,
        restore_input: b.into_script(),
    }
}

/// Compares each foreign chain's layout of our rules with the expected one and, where it
/// differs, deletes all our rules there by value and re-adds the desired ones. Returns the
/// chains touched.
fn plan_hooks(
    b: &mut RestoreBuilder,
    desired: Option<&Table>,
    live: &LiveTable,
    suspect: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let wanted = desired.map(|t| hook_hashes(&t.hooks)).unwrap_or_default();
    let mut chains: Vec<&str> = wanted.keys().copied().collect();
    for (n, c) in &live.chains {
        if !is_owned_chain(n)
            && !wanted.contains_key(n.as_str())
            && c.rules.iter().any(|r| r.hash.is_some())
        {
            chains.push(n);
        }
    }
    chains.sort_by(|a, b| (kernel_chain_rank(a), *a).cmp(&(kernel_chain_rank(b), *b)));

    let mut touched = Vec::new();
    for k in chains {
        if is_owned_chain(k) {
            continue;
        }
        let live_rules = live
            .chains
            .get(k)
            .map(|c| c.rules.as_slice())
            .unwrap_or(&[]);
        let foreign = live_rules.iter().filter(|r| r.hash.is_none()).count();
        let actual: Vec<Option<&str>> = live_rules.iter().map(|r| r.hash.as_deref()).collect();
        let expected = match wanted.get(k) {
            Some(h) => h.expected_layout(foreign),
            None => vec![None; foreign],
        };
        let targets_ok = || {
            let Some(h) = wanted.get(k) else {
                return true;
            };
            let rendered: BTreeMap<&str, &Rule> = h
                .top
                .iter()
                .chain(&h.bottom)
                .chain(&h.always_appended)
                .map(|(rule, hash)| (hash.as_str(), *rule))
                .collect();
            live_rules.iter().all(
                |r| match r.hash.as_deref().and_then(|hash| rendered.get(hash)) {
                    Some(want) => same_target(&r.text, want),
                    None => true,
                },
            )
        };
        if actual == expected && targets_ok() && !suspect(k) {
            continue;
        }
        touched.push(k.to_string());
        for r in live_rules.iter().filter(|r| r.hash.is_some()) {
            b.delete_by_value(k, &r.text);
        }
        if let Some(h) = wanted.get(k) {
            for (i, (rule, hash)) in h.top.iter().enumerate() {
                b.insert(k, i + 1, hash, rule);
            }
            for (rule, hash) in h.bottom.iter().chain(&h.always_appended) {
                b.append(k, hash, rule);
            }
        }
    }
    touched
}

/// A temp-set name (`cali4t<N>` / `cali6t<N>`) not used by anything live or desired.
fn temp_set_name(family: Family, taken: &dyn Fn(&str) -> bool, counter: &mut usize) -> String {
    let prefix = format!("cali{}t", family.ip_version());
    loop {
        let name = format!("{prefix}{counter}");
        *counter += 1;
        if !taken(&name) {
            return name;
        }
    }
}

/// Plans the set changes; also returns the sets that are rebuilt under their name with an
/// incompatible type or family (their referencing chains must be rewritten so the rules bind
/// to the new set).
fn plan_ipsets(
    desired: &BTreeMap<&str, &Ipset>,
    live: &LiveIpsets,
) -> (IpsetPlan, BTreeSet<String>) {
    let mut p = IpsetPlan::default();
    let mut renamed = BTreeSet::new();
    let mut used_temps: BTreeSet<String> = BTreeSet::new();
    let mut counter = 0usize;
    let mut before = String::new();
    let mut after = String::new();
    for (name, want) in desired {
        let Some(have) = live.sets.get(*name) else {
            p.create.push(name.to_string());
            write_create(&mut before, name, want);
            for m in &want.members {
                write_add(&mut before, name, m);
            }
            continue;
        };
        let same_kind = have.set_type == Some(want.set_type) && have.family == Some(want.family);
        if same_kind && have.max_elements == Some(want.max_elements) {
            let wanted: BTreeMap<String, &String> = want
                .members
                .iter()
                .map(|m| (normalize_member(m), m))
                .collect();
            let mut changed = false;
            for (norm, original) in &wanted {
                if !have.members.contains(norm) {
                    write_add(&mut before, name, original);
                    changed = true;
                }
            }
            for m in &have.members {
                if !wanted.contains_key(m) {
                    write_del(&mut before, name, m);
                    changed = true;
                }
            }
            if changed {
                p.update.push(name.to_string());
            }
            continue;
        }
        // Metadata differs: build the wanted set aside, then put it in place.
        p.replace.push(name.to_string());
        let taken = |n: &str| {
            live.sets.contains_key(n) || desired.contains_key(n) || used_temps.contains(n)
        };
        let tmp = temp_set_name(want.family, &taken, &mut counter);
        used_temps.insert(tmp.clone());
        write_create(&mut before, &tmp, want);
        for m in &want.members {
            write_add(&mut before, &tmp, m);
        }
        if same_kind {
            // Only maxelem differs: `swap` exchanges the sets under the rules' feet.
            before.push_str(&format!("swap {tmp} {name}\ndestroy {tmp}\n"));
        } else {
            // The kernel refuses to swap sets of different type/family. Rename the old set
            // away (rules keep pointing at it), give the new one the name (rewritten rules bind
            // to it), and destroy the old one once no rule references it.
            let taken = |n: &str| {
                live.sets.contains_key(n) || desired.contains_key(n) || used_temps.contains(n)
            };
            let old = temp_set_name(have.family.unwrap_or(want.family), &taken, &mut counter);
            used_temps.insert(old.clone());
            before.push_str(&format!("rename {name} {old}\nrename {tmp} {name}\n"));
            after.push_str(&format!("destroy {old}\n"));
            renamed.insert(name.to_string());
        }
    }
    for name in live.sets.keys() {
        if !desired.contains_key(name.as_str()) {
            p.destroy.push(name.clone());
            after.push_str("destroy ");
            after.push_str(name);
            after.push('\n');
        }
    }
    p.before = before;
    p.after = after;
    (p, renamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::save::{find_hash, LiveRule};
    use crate::ruleset::{Action, HookPosition, HookRule, IpsetType, LiveIpset, Rule};

    #[test]
    fn the_printed_target_is_the_last_jump_or_goto() {
        for (text, want) in [
            ("-p tcp -j ACCEPT", Some(("-j", "ACCEPT"))),
            (
                "-m comment --comment \"cali:x\" --jump cali-INPUT",
                Some(("-j", "cali-INPUT")),
            ),
            ("-i eth0 -g cali-th-eth0", Some(("-g", "cali-th-eth0"))),
            ("--goto cali-th-eth0", Some(("-g", "cali-th-eth0"))),
            ("-j MARK --set-xmark 0x10000/0x10000", Some(("-j", "MARK"))),
            ("-j LOG --log-prefix x -j DROP", Some(("-j", "DROP"))),
            ("-p tcp --dport 22", None),
            ("-p tcp -j", None),
            ("", None),
        ] {
            assert_eq!(printed_target(text), want, "{text}");
        }
    }

    /// A packed chain keeps of each rule only `packed::target_part`: the target read from that
    /// part must be the one read from the whole text, or packing would change plans.
    #[test]
    fn the_target_of_a_packed_rule_is_the_target_of_its_text() {
        for text in [
            "-p tcp -j ACCEPT",
            "-m comment --comment \"cali:x\" --jump cali-INPUT",
            "-m comment --comment \"a -j b\" -g cali-th-eth0",
            "-j MARK --set-xmark 0x10000/0x10000",
            "-j LOG --log-prefix x -j DROP",
            "-j ACCEPT -j",
            "-j -g",
            "-g -j X",
            "-j  \t -j   X",
            "-p tcp --dport 22",
            "-p tcp -j",
            "",
        ] {
            assert_eq!(
                printed_target(target_part(text)),
                printed_target(text),
                "{text:?}"
            );
        }
    }

    // ---- a tiny in-memory iptables-restore --noflush, strict about what the kernel refuses ----

    fn references(text: &str, chain: &str) -> bool {
        let words: Vec<&str> = text.split_whitespace().collect();
        words
            .windows(2)
            .any(|w| matches!(w[0], "--jump" | "--goto" | "-j" | "-g") && w[1] == chain)
    }

    fn apply(live: &mut LiveTable, input: &str) {
        for txn in input.split_inclusive("COMMIT\n") {
            let mut next = live.clone();
            for line in txn.lines() {
                if line.starts_with('*') || line == "COMMIT" {
                    continue;
                }
                if let Some(decl) = line.strip_prefix(':') {
                    let name = decl.split_whitespace().next().unwrap();
                    let c = next.chains.entry(name.to_string()).or_default();
                    c.name = name.to_string();
                    c.rules.clear();
                    continue;
                }
                let (op, rest) = line.split_at(2);
                let rest = rest.trim_start();
                let (chain, body) = rest.split_once(' ').unwrap_or((rest, ""));
                match op {
                    "-A" => {
                        let c = next.chains.get_mut(chain).expect("-A to missing chain");
                        c.rules.push(rule_of(body));
                    }
                    "-I" => {
                        let (pos, body) = body.split_once(' ').unwrap();
                        let pos: usize = pos.parse().unwrap();
                        let c = next.chains.get_mut(chain).expect("-I to missing chain");
                        assert!(pos >= 1 && pos <= c.rules.len() + 1, "bad -I position");
                        c.rules.insert(pos - 1, rule_of(body));
                    }
                    "-D" => {
                        let c = next.chains.get_mut(chain).expect("-D in missing chain");
                        let i = c
                            .rules
                            .iter()
                            .position(|r| r.text == body)
                            .unwrap_or_else(|| panic!("-D of absent rule {body}"));
                        c.rules.remove(i);
                    }
                    "-X" => {
                        let c = &next.chains[chain];
                        assert!(c.rules.is_empty(), "-X of non-empty {chain}");
                        let referenced = next
                            .chains
                            .values()
                            .flat_map(|c| &c.rules)
                            .any(|r| references(&r.text, chain));
                        assert!(!referenced, "-X of referenced {chain}");
                        next.chains.remove(chain);
                    }
                    _ => panic!("unexpected line {line}"),
                }
            }
            assert!(txn.ends_with("COMMIT\n"), "transaction without COMMIT");
            *live = next;
        }
    }

    fn rule_of(text: &str) -> LiveRule {
        LiveRule {
            hash: find_hash(text).map(str::to_string),
            text: text.to_string(),
            packets: 0,
            bytes: 0,
        }
    }

    // ---- fixtures ----

    fn jump(t: &str) -> Rule {
        Rule {
            matches: Default::default(),
            action: Action::Jump(t.into()),
            comments: Default::default(),
        }
    }

    fn chain(name: &str, rules: Vec<Rule>) -> (String, Chain) {
        (
            name.to_string(),
            Chain {
                name: name.into(),
                rules: rules.into(),
            },
        )
    }

    fn hook(k: &str, position: HookPosition, rule: Rule) -> HookRule {
        HookRule {
            kernel_chain: k.into(),
            position,
            rule,
        }
    }

    fn filter(extra_rule: Option<Rule>, position: HookPosition) -> Table {
        let mut fh = vec![
            Rule {
                matches: vec![Match::ConntrackState {
                    negated: false,
                    states: "INVALID".into(),
                }]
                .into(),
                action: Action::Drop,
                comments: Default::default(),
            },
            jump("cali-pi-a"),
        ];
        fh.extend(extra_rule);
        Table {
            name: TableName::Filter,
            chains: [
                chain("cali-INPUT", vec![jump("cali-from-host-endpoint")]),
                chain(
                    "cali-from-host-endpoint",
                    vec![Rule {
                        matches: vec![Match::InInterface {
                            negated: false,
                            name: "eth0".into(),
                        }]
                        .into(),
                        action: Action::Goto("cali-fh-eth0".into()),
                        comments: Default::default(),
                    }],
                ),
                chain("cali-fh-eth0", fh),
                chain(
                    "cali-pi-a",
                    vec![Rule {
                        matches: vec![Match::Set {
                            negated: false,
                            name: "cali40s:a".into(),
                            direction: crate::ruleset::SetDirection::Src,
                        }]
                        .into(),
                        action: Action::SetMark {
                            value: 0x10000,
                            mask: 0x10000,
                        },
                        comments: vec!["GlobalNetworkPolicy a ingress".into()].into(),
                    }],
                ),
            ]
            .into_iter()
            .collect(),
            hooks: vec![
                hook("INPUT", position, jump("cali-INPUT")),
                hook(
                    "FORWARD",
                    HookPosition::AlwaysAppend,
                    Rule {
                        matches: Default::default(),
                        action: Action::SetMark {
                            value: 0x10000,
                            mask: 0x10000,
                        },
                        comments: Default::default(),
                    },
                ),
            ],
        }
    }

    fn ipset(name: &str, members: &[&str]) -> Ipset {
        Ipset {
            name: name.into(),
            set_type: IpsetType::HashNet,
            family: Family::V4,
            max_elements: 1048576,
            members: members.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Live IPv4 sets as `ipset save` would report them: (name, type, maxelem, members).
    fn live_sets(sets: &[(&str, IpsetType, u32, &[&str])]) -> LiveIpsets {
        LiveIpsets {
            sets: sets
                .iter()
                .map(|&(name, set_type, max, members)| {
                    let set = LiveIpset {
                        name: name.into(),
                        set_type: Some(set_type),
                        family: Some(Family::V4),
                        max_elements: Some(max),
                        members: members.iter().map(|m| m.to_string()).collect(),
                    };
                    (name.to_string(), set)
                })
                .collect(),
        }
    }

    fn ruleset(filter_table: Table, sets: &[Ipset]) -> Ruleset {
        Ruleset {
            family: Family::V4,
            tables: vec![
                Table {
                    name: TableName::Raw,
                    chains: BTreeMap::new(),
                    hooks: vec![],
                },
                filter_table,
            ],
            ipsets: sets.iter().map(|s| (s.name.clone(), s.clone())).collect(),
        }
    }

    /// A live filter table with foreign state: user rules in INPUT/FORWARD and a
    /// DOCKER-USER-like chain.
    fn foreign_filter() -> LiveTable {
        let mut t = LiveTable::default();
        for (name, policy) in [
            ("INPUT", "ACCEPT"),
            ("FORWARD", "DROP"),
            ("OUTPUT", "ACCEPT"),
        ] {
            t.chains.insert(
                name.into(),
                LiveChain {
                    name: name.into(),
                    policy: Some(policy.into()),
                    unverified: false,
                    packed: None,
                    rules: vec![],
                },
            );
        }
        t.chains
            .get_mut("INPUT")
            .unwrap()
            .rules
            .push(rule_of("-p tcp -m tcp --dport 2222 -j ACCEPT"));
        t.chains
            .get_mut("FORWARD")
            .unwrap()
            .rules
            .push(rule_of("-j DOCKER-USER"));
        t.chains.insert(
            "DOCKER-USER".into(),
            LiveChain {
                name: "DOCKER-USER".into(),
                policy: None,
                unverified: false,
                packed: None,
                rules: vec![rule_of("-s 198.51.100.9/32 -j DROP"), rule_of("-j RETURN")],
            },
        );
        t
    }

    fn live_state(filter_live: &LiveTable) -> Vec<LiveState> {
        vec![LiveState {
            family: Family::V4,
            tables: [(TableName::Filter, filter_live.clone())]
                .into_iter()
                .collect(),
        }]
    }

    fn filter_plan(p: &Plan) -> &TablePlan {
        p.tables
            .iter()
            .find(|t| t.family == Family::V4 && t.table == TableName::Filter)
            .unwrap()
    }

    fn foreign_view(t: &LiveTable) -> Vec<(String, Vec<String>)> {
        t.chains
            .values()
            .filter(|c| !is_owned_chain(&c.name))
            .map(|c| {
                (
                    c.name.clone(),
                    c.rules
                        .iter()
                        .filter(|r| r.hash.is_none())
                        .map(|r| r.text.clone())
                        .collect(),
                )
            })
            .collect()
    }

    /// Applies a plan to the filter table and returns the result.
    fn converge(desired: &Ruleset, live: &LiveTable, opts: PlanOptions) -> (Plan, LiveTable) {
        let p = plan(
            std::slice::from_ref(desired),
            &live_state(live),
            &LiveIpsets::default(),
            opts,
        );
        let mut after = live.clone();
        apply(&mut after, &filter_plan(&p).restore_input.text());
        (p, after)
    }

    fn replan(desired: &Ruleset, live: &LiveTable) -> TablePlan {
        let p = plan(
            std::slice::from_ref(desired),
            &live_state(live),
            &LiveIpsets::default(),
            PlanOptions::default(),
        );
        filter_plan(&p).clone()
    }

    #[test]
    fn empty_to_full_create_then_in_sync() {
        let desired = ruleset(filter(None, HookPosition::Insert), &[]);
        let live = foreign_filter();
        let (p, after) = converge(&desired, &live, PlanOptions::default());
        let fp = filter_plan(&p);
        assert_eq!(
            fp.create,
            [
                "cali-INPUT",
                "cali-fh-eth0",
                "cali-from-host-endpoint",
                "cali-pi-a"
            ]
        );
        assert!(fp.rewrite.is_empty() && fp.delete.is_empty());
        assert_eq!(fp.hooks, ["INPUT", "FORWARD"]);
        assert!(fp
            .restore_input
            .text()
            .starts_with("*filter\n:cali-INPUT - [0:0]\n"));
        assert!(fp.restore_input.text().ends_with("COMMIT\n"));
        // Insert mode: our hook is first, the user's rule follows; FORWARD's always-appended
        // rule is after DOCKER-USER's jump.
        assert_eq!(
            after.chains["INPUT"].rules[0].text,
            "-m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" --jump cali-INPUT"
        );
        assert_eq!(
            after.chains["INPUT"].rules[1].text,
            "-p tcp -m tcp --dport 2222 -j ACCEPT"
        );
        assert_eq!(after.chains["FORWARD"].rules[0].text, "-j DOCKER-USER");
        assert!(after.chains["FORWARD"].rules[1].hash.is_some());
        assert_eq!(foreign_view(&after), foreign_view(&live));
        // Raw: nothing desired, nothing live: empty.
        assert!(p
            .tables
            .iter()
            .filter(|t| t.table != TableName::Filter)
            .all(|t| t.is_empty()));

        let again = replan(&desired, &after);
        assert!(
            again.is_empty(),
            "second plan not empty: {}",
            again.restore_input
        );
    }

    #[test]
    fn one_changed_chain_is_the_only_rewrite() {
        let old = ruleset(filter(None, HookPosition::Insert), &[]);
        let (_, live) = converge(&old, &foreign_filter(), PlanOptions::default());
        let new = ruleset(filter(Some(jump("cali-pi-a")), HookPosition::Insert), &[]);
        let (p, after) = converge(&new, &live, PlanOptions::default());
        let fp = filter_plan(&p);
        assert_eq!(fp.rewrite, ["cali-fh-eth0"]);
        assert!(fp.create.is_empty() && fp.delete.is_empty() && fp.hooks.is_empty());
        assert!(!fp.restore_input.text().contains("cali-INPUT"));
        assert!(!fp.restore_input.text().contains("-A cali-pi-a"));
        assert_eq!(after.chains["cali-fh-eth0"].rules.len(), 3);
        assert!(replan(&new, &after).is_empty());
        let text = p.to_string();
        assert!(
            text.contains("IPv4 filter: rewrite chain cali-fh-eth0"),
            "{text}"
        );
    }

    #[test]
    fn a_memo_kept_across_edits_plans_exactly_what_a_fresh_one_does() {
        let states = [
            ruleset(filter(None, HookPosition::Insert), &[]),
            ruleset(filter(Some(jump("cali-pi-a")), HookPosition::Insert), &[]),
            ruleset(filter(None, HookPosition::Insert), &[]),
            ruleset(
                filter(Some(jump("cali-fh-eth0")), HookPosition::Append),
                &[],
            ),
            ruleset(
                filter(Some(jump("cali-fh-eth0")), HookPosition::Append),
                &[],
            ),
        ];
        let memo = HashMemo::default();
        let mut live = foreign_filter();
        for (i, desired) in states.iter().enumerate() {
            let plan_with = |memo: &HashMemo| {
                plan_with_suspects(
                    std::slice::from_ref(desired),
                    &live_state(&live),
                    &LiveIpsets::default(),
                    PlanOptions::default(),
                    &Suspects::default(),
                    memo,
                )
            };
            let kept = plan_with(&memo);
            assert_eq!(kept, plan_with(&HashMemo::default()), "state {i}");
            assert_eq!(i == 4, kept.is_empty(), "state {i}: {kept}");
            apply(&mut live, &filter_plan(&kept).restore_input.text());
            assert!(replan(desired, &live).is_empty(), "state {i}");
        }
        assert_eq!(memo.len(Family::V6), 0);
        let filter = states[4]
            .tables
            .iter()
            .find(|t| t.name == TableName::Filter);
        assert_eq!(memo.len(Family::V4), filter.map_or(0, |t| t.chains.len()));
    }

    #[test]
    fn stale_chain_deleted_after_its_references() {
        let mut old_filter = filter(None, HookPosition::Insert);
        let endpoint = old_filter.chains.get_mut("cali-fh-eth0").unwrap();
        let mut rules = endpoint.rules.to_vec();
        rules.push(jump("cali-pi-old"));
        endpoint.rules = rules.into();
        old_filter
            .chains
            .extend([chain("cali-pi-old", vec![jump("cali-pi-a")])]);
        let (_, live) = converge(
            &ruleset(old_filter, &[]),
            &foreign_filter(),
            PlanOptions::default(),
        );
        for nft in [false, true] {
            let new = ruleset(filter(None, HookPosition::Insert), &[]);
            let (p, after) = converge(&new, &live, PlanOptions { nft });
            let fp = filter_plan(&p);
            assert_eq!(fp.delete, ["cali-pi-old"]);
            assert_eq!(fp.rewrite, ["cali-fh-eth0"]);
            let txns = fp.restore_input.text().matches("COMMIT\n").count();
            assert_eq!(txns, if nft { 2 } else { 1 });
            assert!(!after.chains.contains_key("cali-pi-old"));
            assert!(replan(&new, &after).is_empty());
        }
    }

    #[test]
    fn foreign_rule_above_our_hook_is_fixed() {
        let desired = ruleset(filter(None, HookPosition::Insert), &[]);
        let (_, mut live) = converge(&desired, &foreign_filter(), PlanOptions::default());
        // Someone inserts a rule at the top of INPUT.
        live.chains
            .get_mut("INPUT")
            .unwrap()
            .rules
            .insert(0, rule_of("-s 203.0.113.0/24 -j DROP"));
        let (p, after) = converge(&desired, &live, PlanOptions::default());
        let fp = filter_plan(&p);
        assert_eq!(fp.hooks, ["INPUT"]);
        assert!(fp.create.is_empty() && fp.rewrite.is_empty());
        let texts: Vec<&str> = after.chains["INPUT"]
            .rules
            .iter()
            .map(|r| r.text.as_str())
            .collect();
        assert_eq!(texts.len(), 3);
        assert!(after.chains["INPUT"].rules[0].hash.is_some());
        assert_eq!(
            &texts[1..],
            [
                "-s 203.0.113.0/24 -j DROP",
                "-p tcp -m tcp --dport 2222 -j ACCEPT"
            ]
        );
        assert!(replan(&desired, &after).is_empty());
    }

    #[test]
    fn append_mode_keeps_ours_after_foreign() {
        let desired = ruleset(filter(None, HookPosition::Append), &[]);
        let (_, after) = converge(&desired, &foreign_filter(), PlanOptions::default());
        let input = &after.chains["INPUT"].rules;
        assert_eq!(input[0].text, "-p tcp -m tcp --dport 2222 -j ACCEPT");
        assert!(input[1].hash.is_some());
        assert!(replan(&desired, &after).is_empty());
        // A foreign rule appended after ours breaks the layout and is fixed.
        let mut drifted = after.clone();
        drifted
            .chains
            .get_mut("INPUT")
            .unwrap()
            .rules
            .push(rule_of("-j LOG"));
        let fixed = replan(&desired, &drifted);
        assert_eq!(fixed.hooks, ["INPUT"]);
    }

    #[test]
    fn stale_hook_hash_and_stray_hashed_rules_removed() {
        let desired = ruleset(filter(None, HookPosition::Insert), &[]);
        let mut live = foreign_filter();
        // An old-version hook in INPUT and a stray hashed rule in DOCKER-USER.
        live.chains.get_mut("INPUT").unwrap().rules.insert(
            0,
            rule_of("-m comment --comment \"cali:OLDOLDOLDOLDOLD0\" -j cali-INPUT"),
        );
        live.chains.get_mut("DOCKER-USER").unwrap().rules.insert(
            1,
            rule_of("-m comment --comment \"cali:STRAYSTRAYSTRAY0\" -j ACCEPT"),
        );
        live.chains.insert(
            "cali-INPUT".into(),
            LiveChain {
                name: "cali-INPUT".into(),
                policy: None,
                unverified: false,
                packed: None,
                rules: vec![],
            },
        );
        let (p, after) = converge(&desired, &live, PlanOptions::default());
        let fp = filter_plan(&p);
        assert_eq!(fp.hooks, ["INPUT", "FORWARD", "DOCKER-USER"]);
        assert!(fp
            .restore_input
            .text()
            .contains("-D INPUT -m comment --comment \"cali:OLDOLDOLDOLDOLD0\" -j cali-INPUT\n"));
        assert_eq!(fp.rewrite, ["cali-INPUT"]);
        assert!(after
            .chains
            .values()
            .flat_map(|c| &c.rules)
            .all(|r| r.hash.as_deref() != Some("OLDOLDOLDOLDOLD0")));
        assert_eq!(after.chains["DOCKER-USER"].rules.len(), 2);
        assert_eq!(foreign_view(&after), foreign_view(&foreign_filter()));
        assert!(replan(&desired, &after).is_empty());
    }

    #[test]
    fn flush_removes_only_ours() {
        let desired = ruleset(
            filter(None, HookPosition::Insert),
            &[ipset("cali40s:a", &["198.51.100.0/24"])],
        );
        let (_, live) = converge(&desired, &foreign_filter(), PlanOptions::default());
        let live_sets = live_sets(&[(
            "cali40s:a",
            IpsetType::HashNet,
            1048576,
            &["198.51.100.0/24"],
        )]);
        let p = flush_plan(&live_state(&live), &live_sets);
        let fp = filter_plan(&p);
        assert_eq!(fp.delete.len(), 4);
        assert_eq!(fp.hooks, ["INPUT", "FORWARD"]);
        assert_eq!(p.ipsets.destroy, ["cali40s:a"]);
        assert_eq!(p.ipsets.after, "destroy cali40s:a\n");
        assert!(p.ipsets.before.is_empty());
        let mut after = live.clone();
        apply(&mut after, &fp.restore_input.text());
        assert_eq!(after, foreign_filter());
        // Flushing a clean system is a no-op.
        assert!(flush_plan(&live_state(&after), &LiveIpsets::default()).is_empty());
    }

    #[test]
    fn ipset_member_deltas_and_lifecycle() {
        let live_sets = live_sets(&[
            (
                "cali40s:a",
                IpsetType::HashNet,
                1048576,
                &["198.51.100.1", "198.51.100.2"],
            ),
            (
                "cali40s:gone",
                IpsetType::HashNet,
                1048576,
                &["203.0.113.0/24"],
            ),
            ("cali40s:small", IpsetType::HashNet, 100, &["203.0.113.5"]),
        ]);
        let desired = ruleset(
            filter(None, HookPosition::Insert),
            &[
                ipset("cali40s:a", &["198.51.100.2/32", "198.51.100.3/32"]),
                ipset("cali40s:new", &["198.51.100.0/25"]),
                ipset("cali40s:small", &["203.0.113.5/32"]),
            ],
        );
        let p = plan(&[desired], &[], &live_sets, PlanOptions::default());
        assert_eq!(p.ipsets.create, ["cali40s:new"]);
        assert_eq!(p.ipsets.update, ["cali40s:a"]);
        assert_eq!(p.ipsets.replace, ["cali40s:small"]);
        assert_eq!(p.ipsets.destroy, ["cali40s:gone"]);
        assert_eq!(
            p.ipsets.before,
            "add cali40s:a 198.51.100.3/32\n\
             del cali40s:a 198.51.100.1\n\
             create cali40s:new hash:net family inet maxelem 1048576\n\
             add cali40s:new 198.51.100.0/25\n\
             create cali4t0 hash:net family inet maxelem 1048576\n\
             add cali4t0 203.0.113.5/32\n\
             swap cali4t0 cali40s:small\n\
             destroy cali4t0\n"
        );
        assert_eq!(p.ipsets.after, "destroy cali40s:gone\n");
    }

    #[test]
    fn ipset_type_change_renames_and_rewrites_referencing_chains() {
        let desired = ruleset(
            filter(None, HookPosition::Insert),
            &[ipset("cali40s:a", &["198.51.100.0/24"])],
        );
        let (_, live) = converge(&desired, &foreign_filter(), PlanOptions::default());
        let live_sets = live_sets(&[("cali40s:a", IpsetType::HashIpPort, 1048576, &[])]);
        let p = plan(
            std::slice::from_ref(&desired),
            &live_state(&live),
            &live_sets,
            PlanOptions::default(),
        );
        assert_eq!(p.ipsets.replace, ["cali40s:a"]);
        assert_eq!(
            p.ipsets.before,
            "create cali4t0 hash:net family inet maxelem 1048576\n\
             add cali4t0 198.51.100.0/24\n\
             rename cali40s:a cali4t1\n\
             rename cali4t0 cali40s:a\n"
        );
        assert_eq!(p.ipsets.after, "destroy cali4t1\n");
        assert_eq!(filter_plan(&p).rewrite, ["cali-pi-a"]);
    }

    #[test]
    fn missing_family_in_desired_is_emptied() {
        let desired = ruleset(filter(None, HookPosition::Insert), &[]);
        let (_, live) = converge(&desired, &foreign_filter(), PlanOptions::default());
        let mut v6 = live_state(&live);
        v6[0].family = Family::V6;
        let p = plan(
            &[desired],
            &v6,
            &LiveIpsets::default(),
            PlanOptions::default(),
        );
        let v6_filter = p
            .tables
            .iter()
            .find(|t| t.family == Family::V6 && t.table == TableName::Filter)
            .unwrap();
        assert_eq!(v6_filter.delete.len(), 4);
        // v4 has nothing live: full create. Order: v4 raw, mangle, filter, nat, then v6.
        let order: Vec<(Family, TableName)> =
            p.tables.iter().map(|t| (t.family, t.table)).collect();
        assert_eq!(order[0], (Family::V4, TableName::Raw));
        assert_eq!(order[2], (Family::V4, TableName::Filter));
        assert_eq!(order[3], (Family::V4, TableName::Nat));
        assert_eq!(order[6], (Family::V6, TableName::Filter));
    }

    #[test]
    fn foreign_named_desired_chain_is_never_written() {
        let mut t = filter(None, HookPosition::Insert);
        t.chains
            .extend([chain("DOCKER-USER", vec![jump("RETURN")])]);
        let desired = ruleset(t, &[]);
        let (p, after) = converge(&desired, &foreign_filter(), PlanOptions::default());
        assert!(!filter_plan(&p)
            .restore_input
            .text()
            .contains("DOCKER-USER - [0:0]"));
        assert_eq!(
            after.chains["DOCKER-USER"],
            foreign_filter().chains["DOCKER-USER"]
        );
    }

    /// `iptables -R … --comment "cali:<same hash>" -j ACCEPT`, in one of our chains and on our
    /// hook: both are repaired although every hash still matches.
    #[test]
    fn a_tampered_target_under_our_hash_is_repaired() {
        let desired = ruleset(filter(None, HookPosition::Insert), &[]);
        let (_, mut live) = converge(&desired, &foreign_filter(), PlanOptions::default());
        for chain in ["cali-fh-eth0", "INPUT"] {
            let rule = &mut live.chains.get_mut(chain).unwrap().rules[0];
            let hash = rule.hash.clone().unwrap();
            rule.text = format!("-m comment --comment \"cali:{hash}\" -j ACCEPT");
        }
        let fp = replan(&desired, &live);
        assert_eq!(fp.rewrite, ["cali-fh-eth0"]);
        assert_eq!(fp.hooks, ["INPUT"]);
        let (_, after) = converge(&desired, &live, PlanOptions::default());
        assert!(replan(&desired, &after).is_empty());
        assert!(!after.chains["INPUT"].rules[0].text.contains("ACCEPT"));
    }

    #[test]
    fn suspects_are_repaired_even_when_hashes_and_targets_match() {
        let desired = ruleset(filter(None, HookPosition::Insert), &[]);
        let (_, live) = converge(&desired, &foreign_filter(), PlanOptions::default());
        let suspects = Suspects {
            chains: [
                (Family::V4, TableName::Filter, "cali-fh-eth0".to_string()),
                (Family::V4, TableName::Filter, "INPUT".to_string()),
            ]
            .into_iter()
            .collect(),
        };
        let p = plan_with_suspects(
            std::slice::from_ref(&desired),
            &live_state(&live),
            &LiveIpsets::default(),
            PlanOptions::default(),
            &suspects,
            &HashMemo::default(),
        );
        assert_eq!(filter_plan(&p).rewrite, ["cali-fh-eth0"]);
        assert_eq!(filter_plan(&p).hooks, ["INPUT"]);
    }

    /// A user chain jumping into a chain of ours that is no longer wanted: the chain is emptied
    /// and kept (`-X` would fail the whole transaction), the plan names the referrer, the rest
    /// of the plan applies, and once the jump is gone the chain is deleted.
    #[test]
    fn a_foreign_jump_into_a_doomed_chain_keeps_it_emptied() {
        let mut old_filter = filter(None, HookPosition::Insert);
        old_filter
            .chains
            .extend([chain("cali-pi-old", vec![jump("cali-pi-a")])]);
        let (_, mut live) = converge(
            &ruleset(old_filter, &[]),
            &foreign_filter(),
            PlanOptions::default(),
        );
        live.chains.insert(
            "MYCHAIN".into(),
            LiveChain {
                name: "MYCHAIN".into(),
                policy: None,
                unverified: false,
                packed: None,
                rules: vec![rule_of("-s 192.0.2.0/24 -j cali-pi-old")],
            },
        );
        let new = ruleset(filter(Some(jump("cali-pi-a")), HookPosition::Insert), &[]);
        for nft in [false, true] {
            let (p, after) = converge(&new, &live, PlanOptions { nft });
            let fp = filter_plan(&p);
            assert!(fp.delete.is_empty(), "{:?}", fp.delete);
            assert_eq!(fp.rewrite, ["cali-fh-eth0"]);
            assert_eq!(
                fp.kept,
                [KeptChain {
                    chain: "cali-pi-old".into(),
                    referrers: vec!["MYCHAIN".into()],
                }]
            );
            assert!(after.chains["cali-pi-old"].rules.is_empty());
            let again = replan(&new, &after);
            assert!(again.is_empty(), "{}", again.restore_input.text());
            assert_eq!(again.kept.len(), 1);
            let text = p.to_string();
            assert!(
                text.contains("cali-pi-old") && text.contains("foreign chain MYCHAIN"),
                "{text}"
            );
            let mut unreferenced = after.clone();
            unreferenced.chains.remove("MYCHAIN");
            let (_, clean) = converge(&new, &unreferenced, PlanOptions { nft });
            assert!(!clean.chains.contains_key("cali-pi-old"));
        }
    }

    /// fail2ban's jump and an admin chain's jump in INPUT come after our inserted hook: both
    /// are reported; in append mode nothing is.
    #[test]
    fn foreign_jumps_below_an_inserted_hook_are_reported() {
        let mut live = foreign_filter();
        for chain in ["f2b-sshd", "crowdsec-chain"] {
            live.chains.insert(
                chain.into(),
                LiveChain {
                    name: chain.into(),
                    policy: None,
                    unverified: false,
                    packed: None,
                    rules: vec![rule_of("-j RETURN")],
                },
            );
            live.chains
                .get_mut("INPUT")
                .unwrap()
                .rules
                .push(rule_of(&format!(
                    "-p tcp -m multiport --dports 22 -j {chain}"
                )));
        }
        let found = overtaken_jumps(
            &[ruleset(filter(None, HookPosition::Insert), &[])],
            &live_state(&live),
        );
        let seen: Vec<(&str, &str, &str)> = found
            .iter()
            .map(|o| (o.chain.as_str(), o.target.as_str(), o.owner))
            .collect();
        assert_eq!(
            seen,
            [
                ("INPUT", "f2b-sshd", "fail2ban"),
                ("INPUT", "crowdsec-chain", "CrowdSec")
            ]
        );
        assert!(found[0].to_string().contains("chainInsertMode: Append"));
        assert!(overtaken_jumps(
            &[ruleset(filter(None, HookPosition::Append), &[])],
            &live_state(&live)
        )
        .is_empty());
    }
}
