//! The rollback planner: hostfw's part of the kernel state (`Snapshot`), and the restore input
//! that puts a snapshot back over the live state, one transaction per table. Pure.

use super::Live;
use crate::ruleset::plan::{self, is_owned_chain, PlanOptions};
use crate::ruleset::restore::{kernel_chain_rank, RestoreBuilder};
use crate::ruleset::{parse_ipset_save, Family, Ipset, LiveTable, Ruleset, SaveError, TableName};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// hostfw's part of one table of one family, as `iptables-save` printed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTable {
    /// 4 or 6.
    pub family: u8,
    /// `raw`, `mangle` or `filter`.
    pub table: String,
    /// Our chains (`cali-*`), each with its rules' save text (after `-A CHAIN `), in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Our rules in other chains (hook rules), in kernel order.
    pub hooks: Vec<SavedHook>,
}

/// One hook rule and where it sat among the foreign rules of its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHook {
    pub chain: String,
    /// How many foreign rules came before it: it goes back after as many of them as are still
    /// there, so a foreign rule added or removed meanwhile does not break the restore.
    pub foreign_before: usize,
    /// Save text after `-A CHAIN `.
    pub text: String,
}

/// hostfw's kernel state at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub tables: Vec<SavedTable>,
    /// `ipset save` output for our sets (`create` and `add` lines).
    pub ipsets: String,
}

/// Our part of one live table: `cali-` chains with their rules, and hook rules (rules in other
/// chains carrying a `cali:` hash) with the count of foreign rules before each. Pure.
pub(crate) fn saved_table(family: Family, table: TableName, live: &LiveTable) -> SavedTable {
    let mut chains = BTreeMap::new();
    let mut hooks = Vec::new();
    for (name, chain) in &live.chains {
        if is_owned_chain(name) {
            let rules = chain.full_rules().iter().map(|r| r.text.clone()).collect();
            chains.insert(name.clone(), rules);
            continue;
        }
        let mut foreign_before = 0;
        for rule in &chain.rules {
            if rule.hash.is_none() {
                foreign_before += 1;
                continue;
            }
            hooks.push(SavedHook {
                chain: name.clone(),
                foreign_before,
                text: rule.text.clone(),
            });
        }
    }
    SavedTable {
        family: family.ip_version(),
        table: table.as_str().to_string(),
        chains,
        hooks,
    }
}

/// Everything a rollback writes, in order: `ipsets_before`, each table's input (one
/// `iptables-restore` call per table), `ipsets_after`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RollbackPlan {
    /// Creates and fills the snapshot's sets (members by add/del, metadata changes by swap), so
    /// no rule, old or restored, ever points at a missing or half-filled set.
    pub ipsets_before: String,
    /// Per table that differs from the snapshot: the restore input.
    pub tables: Vec<(Family, TableName, String)>,
    /// Destroys our sets that nothing references any more.
    pub ipsets_after: String,
}

/// Plans the rollback from `live` to `snap`. Each table that differs becomes ONE transaction
/// that flushes every live `cali-` chain, deletes our live hook rules by value, recreates the
/// snapshot's chains, rules and hook rules, and deletes our chains the snapshot lacks: the
/// kernel swaps it in at `COMMIT`, so packets see the new state or the old, never a table
/// without our rules. With `nft`, the chain deletions follow in a second transaction of the
/// same input (older iptables-nft-restore sees references as they were when a transaction
/// started); by then those chains are empty and unreferenced, so they match nothing. Pure.
pub(crate) fn rollback_plan(
    snap: &Snapshot,
    live: &Live,
    nft: bool,
) -> Result<RollbackPlan, SaveError> {
    let empty = LiveTable::default();
    let mut tables = Vec::new();
    for state in &live.tables {
        for table in TableName::ALL {
            let live_table = state.tables.get(&table).unwrap_or(&empty);
            let saved = snap
                .tables
                .iter()
                .find(|t| t.family == state.family.ip_version() && t.table == table.as_str());
            let input = table_rollback(state.family, table, saved, live_table, nft);
            if !input.is_empty() {
                tables.push((state.family, table, input));
            }
        }
    }
    let (ipsets_before, ipsets_after) = ipset_rollback(snap, live, nft)?;
    Ok(RollbackPlan {
        ipsets_before,
        tables,
        ipsets_after,
    })
}

/// The rollback input of one table; empty when the table already holds the snapshot's state.
fn table_rollback(
    family: Family,
    table: TableName,
    saved: Option<&SavedTable>,
    live: &LiveTable,
    nft: bool,
) -> String {
    let now = saved_table(family, table, live);
    let want = saved.cloned().unwrap_or_else(|| SavedTable {
        chains: BTreeMap::new(),
        hooks: Vec::new(),
        ..now.clone()
    });
    if now.chains == want.chains && now.hooks == want.hooks {
        return String::new();
    }
    let mut b = RestoreBuilder::new();
    b.start(table);
    // 1. Create the snapshot's chains and flush every live one of ours (doomed ones included:
    //    their own jumps must go before anything they reference is deleted).
    let declared: BTreeSet<&String> = now.chains.keys().chain(want.chains.keys()).collect();
    for name in &declared {
        b.chain_line(name);
    }
    // 2. Our live hook rules go, by value.
    for hook in &now.hooks {
        b.delete_by_value(&hook.chain, &hook.text);
    }
    let mut text = b.finish();
    // 3. The snapshot's rules, verbatim as iptables-save printed them.
    for (name, rules) in &want.chains {
        for rule in rules {
            push_rule(&mut text, "-A", name, rule);
        }
    }
    // 4. The snapshot's hook rules, each after as many foreign rules as preceded it then.
    let mut placed: BTreeMap<&str, usize> = BTreeMap::new();
    for hook in &want.hooks {
        let foreign = match live.chains.get(&hook.chain) {
            Some(c) => c.rules.iter().filter(|r| r.hash.is_none()).count(),
            None if is_builtin_chain(&hook.chain) => 0,
            None => {
                log::warn!(
                    "not restoring a hook rule in chain {} ({}): the chain no longer exists",
                    hook.chain,
                    table.as_str()
                );
                continue;
            }
        };
        let ours = placed.entry(hook.chain.as_str()).or_default();
        if hook.foreign_before >= foreign {
            push_rule(&mut text, "-A", &hook.chain, &hook.text);
        } else {
            let at = format!("{} {}", hook.chain, hook.foreign_before + *ours + 1);
            push_rule(&mut text, "-I", &at, &hook.text);
        }
        *ours += 1;
    }
    // 5. Our chains the snapshot does not have, once nothing references them.
    let doomed: Vec<&String> = now
        .chains
        .keys()
        .filter(|n| !want.chains.contains_key(*n))
        .collect();
    if nft && !doomed.is_empty() {
        text.push_str("COMMIT\n");
        let mut b = RestoreBuilder::new();
        b.start(table);
        for name in &doomed {
            b.delete_chain(name);
        }
        b.commit();
        text.push_str(&b.finish());
    } else {
        for name in &doomed {
            push_rule(&mut text, "-X", name, "");
        }
        text.push_str("COMMIT\n");
    }
    text
}

/// True for the kernel's own chains, which exist even when a table was never loaded.
fn is_builtin_chain(name: &str) -> bool {
    // kernel_chain_rank ranks exactly the built-in chains below 5.
    kernel_chain_rank(name) < 5
}

/// `VERB TARGET TEXT` (TARGET is a chain, or `CHAIN N` for `-I`).
fn push_rule(out: &mut String, verb: &str, target: &str, rule: &str) {
    out.push_str(verb);
    out.push(' ');
    out.push_str(target);
    if !rule.is_empty() {
        out.push(' ');
        out.push_str(rule);
    }
    out.push('\n');
}

/// The set changes: the snapshot's sets as wanted, plus live sets that foreign rules still
/// reference (those must survive as they are). Planned by `ruleset::plan`, so an existing set is
/// updated in place (add/del, or swapped when its metadata differs), never destroyed while a
/// rule uses it; sets nobody wants are destroyed after the tables are written.
fn ipset_rollback(snap: &Snapshot, live: &Live, nft: bool) -> Result<(String, String), SaveError> {
    let saved = parse_ipset_save(&snap.ipsets)?;
    let foreign_refs: BTreeSet<String> = live
        .tables
        .iter()
        .flat_map(|s| s.tables.values())
        .flat_map(|t| t.chains.iter())
        .filter(|(name, _)| !is_owned_chain(name))
        .flat_map(|(_, c)| c.rules.iter())
        .filter(|r| r.hash.is_none())
        .flat_map(|r| sets_in(&r.text))
        .collect();
    let kept = live
        .ipsets
        .sets
        .values()
        .filter(|s| foreign_refs.contains(&s.name) && !saved.sets.contains_key(&s.name));
    let mut by_family: BTreeMap<Family, BTreeMap<String, Ipset>> = BTreeMap::new();
    for set in saved.sets.values().chain(kept) {
        let (Some(set_type), Some(family), Some(max_elements)) =
            (set.set_type, set.family, set.max_elements)
        else {
            log::warn!(
                "not restoring ipset {}: hostfw does not create its kind",
                set.name
            );
            continue;
        };
        by_family.entry(family).or_default().insert(
            set.name.clone(),
            Ipset {
                name: set.name.clone(),
                set_type,
                family,
                max_elements,
                members: set.members.clone(),
            },
        );
    }
    let desired: Vec<Ruleset> = by_family
        .into_iter()
        .map(|(family, ipsets)| Ruleset {
            family,
            tables: Vec::new(),
            ipsets,
        })
        .collect();
    // No live tables and no desired tables: only the set part of the plan has content.
    let p = plan::plan(&desired, &[], &live.ipsets, PlanOptions { nft });
    Ok((p.ipsets.before, p.ipsets.after))
}

/// Set names a rule matches on (`--match-set NAME`).
fn sets_in(rule: &str) -> Vec<String> {
    let words: Vec<&str> = rule.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "--match-set")
        .map(|w| w[1].to_string())
        .collect()
}
