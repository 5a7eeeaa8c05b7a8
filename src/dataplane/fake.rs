//! An in-memory dataplane for tests: a small model of iptables tables and ipsets that applies
//! `iptables-restore --noflush` and `ipset restore -exist` input the way the kernel's tools do
//! (one transaction per restore, chain deletion refused while referenced or non-empty, a set
//! cannot be destroyed while a rule uses it, a rule cannot use a missing set), prints
//! `iptables-save`-like text, records every call (argv and stdin) and injects failures.
//! Spawns nothing and reads nothing from the host.

use super::real::RESTORE_ARGS;
use super::{Backend, Dataplane, DataplaneError};
use crate::ruleset::ipset::normalize_member;
use crate::ruleset::{Family, TableName};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

/// One call the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The argv the real dataplane would have run.
    pub argv: Vec<String>,
    /// What it would have fed on stdin.
    pub stdin: Option<String>,
}

impl Call {
    pub fn is_restore(&self) -> bool {
        self.argv[0].contains("tables-") && self.argv[0].ends_with("-restore")
    }
    pub fn is_ipset_restore(&self) -> bool {
        self.argv[0] == "ipset" && self.argv.get(1).is_some_and(|a| a == "restore")
    }
}

/// Which calls an injected fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Save,
    /// Any iptables restore.
    Restore,
    /// A restore of this table only (a later table of a pass failing).
    RestoreOf(TableName),
    IpsetSave,
    IpsetRestore,
}

/// The failure to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The xtables lock is held by someone else.
    Busy,
    /// The tool fails with this stderr (nothing is applied).
    Fail(String),
    PermissionDenied,
}

#[derive(Debug, Clone)]
struct FakeChain {
    /// Built-in chains have a policy and cannot be deleted.
    policy: Option<String>,
    /// Rule text after `-A <chain> `, exactly as written.
    rules: Vec<String>,
}

type Tables = BTreeMap<(Family, TableName), BTreeMap<String, FakeChain>>;

#[derive(Debug, Clone)]
struct FakeSet {
    /// Everything after `create NAME` (type and options).
    spec: String,
    members: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct State {
    tables: Tables,
    ipsets: BTreeMap<String, FakeSet>,
    calls: Vec<Call>,
    faults: VecDeque<(Op, Fault)>,
    /// Foreign restores run just before our next restore (a concurrent writer).
    interference: VecDeque<(Family, TableName, String)>,
    /// Every save exits 0 and prints nothing (a broken or wrapped iptables-save).
    blind: bool,
}

/// In-memory iptables + ipset.
#[derive(Debug)]
pub struct FakeDataplane {
    backend: Backend,
    families: BTreeSet<Family>,
    state: Mutex<State>,
}

fn builtin_chains(table: TableName) -> &'static [&'static str] {
    match table {
        TableName::Raw => &["PREROUTING", "OUTPUT"],
        TableName::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        TableName::Filter => &["INPUT", "FORWARD", "OUTPUT"],
        TableName::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
    }
}

fn fresh_table(table: TableName) -> BTreeMap<String, FakeChain> {
    builtin_chains(table)
        .iter()
        .map(|name| {
            (
                name.to_string(),
                FakeChain {
                    policy: Some("ACCEPT".into()),
                    rules: Vec::new(),
                },
            )
        })
        .collect()
}

fn program(backend: Backend, family: Family, verb: &str) -> String {
    format!("{}-{}-{verb}", family.iptables(), backend.as_str())
}

impl Default for FakeDataplane {
    fn default() -> Self {
        FakeDataplane::new(Backend::Legacy)
    }
}

impl FakeDataplane {
    /// Empty tables for both families.
    pub fn new(backend: Backend) -> FakeDataplane {
        let mut tables = Tables::new();
        for family in [Family::V4, Family::V6] {
            for table in TableName::OWNED {
                tables.insert((family, table), fresh_table(table));
            }
        }
        FakeDataplane {
            backend,
            families: [Family::V4, Family::V6].into_iter().collect(),
            state: Mutex::new(State {
                tables,
                ..State::default()
            }),
        }
    }

    /// A host without IPv6 tools.
    pub fn without_ipv6(mut self) -> FakeDataplane {
        self.families.remove(&Family::V6);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply restore input as another tool would (not recorded, no faults): seeds foreign rules
    /// or simulates an admin's edit.
    pub fn external_restore(&self, family: Family, table: TableName, input: &str) {
        let mut state = self.lock();
        let state = &mut *state;
        if let Err(e) = apply_restore(&mut state.tables, &state.ipsets, family, table, input) {
            panic!("fake: external restore failed: {e}\n{input}");
        }
    }

    /// Apply `ipset restore` input as another tool would.
    pub fn external_ipset_restore(&self, input: &str) {
        let mut state = self.lock();
        let state = &mut *state;
        if let Err(e) = apply_ipset(&state.tables, &mut state.ipsets, input) {
            panic!("fake: external ipset restore failed: {e}");
        }
    }

    /// Make the next call of kind `op` fail with `fault` (queue several for several failures).
    pub fn inject(&self, op: Op, fault: Fault) {
        self.lock().faults.push_back((op, fault));
    }

    /// Just before our next iptables restore, another writer applies `input` to the table.
    pub fn interfere(&self, family: Family, table: TableName, input: &str) {
        self.lock()
            .interference
            .push_back((family, table, input.to_string()));
    }

    /// From now on every iptables save succeeds with empty output, whatever the tables hold
    /// (listing single chains, another program, still shows them).
    pub fn blind_saves(&self) {
        self.lock().blind = true;
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Forget recorded calls (e.g. after seeding state with a first reconcile).
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// iptables restores run so far.
    pub fn restores(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_restore).collect()
    }

    /// The rules of one chain (text after `-A CHAIN `); None if the chain does not exist.
    pub fn rules(&self, family: Family, table: TableName, chain: &str) -> Option<Vec<String>> {
        self.lock()
            .tables
            .get(&(family, table))
            .and_then(|t| t.get(chain))
            .map(|c| c.rules.clone())
    }

    /// Names of every chain of one table.
    pub fn chains(&self, family: Family, table: TableName) -> Vec<String> {
        self.lock()
            .tables
            .get(&(family, table))
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Members of one set; None if it does not exist.
    pub fn set_members(&self, name: &str) -> Option<BTreeSet<String>> {
        self.lock().ipsets.get(name).map(|s| s.members.clone())
    }

    /// Names of every set.
    pub fn sets(&self) -> Vec<String> {
        self.lock().ipsets.keys().cloned().collect()
    }

    fn take_fault(state: &mut State, op: Op) -> Option<Fault> {
        let index = state.faults.iter().position(|(o, _)| *o == op)?;
        state.faults.remove(index).map(|(_, f)| f)
    }

    fn fault_error(fault: Fault, program: String, input: Option<&str>) -> DataplaneError {
        match fault {
            Fault::Busy => DataplaneError::Busy {
                program,
                stderr: "Another app is currently holding the xtables lock.".into(),
            },
            Fault::PermissionDenied => DataplaneError::PermissionDenied {
                program,
                stderr: "Permission denied (you must be root)".into(),
            },
            Fault::Fail(stderr) => match input {
                Some(input) => DataplaneError::RestoreFailed {
                    program,
                    status: "exit status 1".into(),
                    stderr,
                    input: input.to_string(),
                },
                None => DataplaneError::SaveFailed {
                    program,
                    status: "exit status 1".into(),
                    stderr,
                },
            },
        }
    }
}

impl Dataplane for FakeDataplane {
    fn save(&self, family: Family, table: TableName) -> Result<String, DataplaneError> {
        let mut state = self.lock();
        let program = program(self.backend, family, "save");
        state.calls.push(Call {
            argv: vec![program.clone(), "-t".into(), table.as_str().into()],
            stdin: None,
        });
        if let Some(fault) = Self::take_fault(&mut state, Op::Save) {
            return Err(Self::fault_error(fault, program, None));
        }
        if state.blind {
            return Ok(String::new());
        }
        Ok(render_save(table, &state.tables[&(family, table)]))
    }

    /// As the real dataplane: one save of every table of the family (no `-t`). Faults injected
    /// for `Op::Save` fail the whole.
    fn save_tables(
        &self,
        family: Family,
        line: &mut dyn FnMut(&str),
    ) -> Result<(), DataplaneError> {
        let mut state = self.lock();
        let program = program(self.backend, family, "save");
        state.calls.push(Call {
            argv: vec![program.clone()],
            stdin: None,
        });
        if let Some(fault) = Self::take_fault(&mut state, Op::Save) {
            return Err(Self::fault_error(fault, program, None));
        }
        if state.blind {
            return Ok(());
        }
        for table in TableName::OWNED {
            render_save(table, &state.tables[&(family, table)])
                .lines()
                .for_each(&mut *line);
        }
        Ok(())
    }

    /// As the real dataplane: chains one by one on nft (`iptables -S`), none on legacy; a
    /// missing chain fails as `-S` does. Faults injected for `Op::Save` apply here too.
    fn save_chains(
        &self,
        family: Family,
        table: TableName,
        chains: &[&str],
    ) -> Result<Option<String>, DataplaneError> {
        if self.backend != Backend::Nft {
            return Ok(None);
        }
        let mut state = self.lock();
        let program = program(self.backend, family, "list");
        let mut out = format!("*{}\n", table.as_str());
        for chain in chains {
            state.calls.push(Call {
                argv: vec![
                    program.clone(),
                    "-t".into(),
                    table.as_str().into(),
                    "-S".into(),
                    chain.to_string(),
                ],
                stdin: None,
            });
            if let Some(fault) = Self::take_fault(&mut state, Op::Save) {
                return Err(Self::fault_error(fault, program, None));
            }
            let Some(found) = state.tables[&(family, table)].get(*chain) else {
                return Err(DataplaneError::SaveFailed {
                    program,
                    status: "exit status: 1".into(),
                    stderr: "iptables: No chain/target/match by that name.".into(),
                });
            };
            let policy = found.policy.as_deref().unwrap_or("-");
            out.push_str(&format!(":{chain} {policy} [0:0]\n"));
            for rule in &found.rules {
                out.push_str(&format!("-A {chain} {rule}\n"));
            }
        }
        out.push_str("COMMIT\n");
        Ok(Some(out))
    }

    fn restore(&self, family: Family, table: TableName, input: &str) -> Result<(), DataplaneError> {
        let mut state = self.lock();
        let state = &mut *state;
        let program = program(self.backend, family, "restore");
        state.calls.push(Call {
            argv: std::iter::once(program.as_str())
                .chain(RESTORE_ARGS)
                .map(String::from)
                .collect(),
            stdin: Some(input.to_string()),
        });
        while let Some((f, t, text)) = state.interference.pop_front() {
            if let Err(e) = apply_restore(&mut state.tables, &state.ipsets, f, t, &text) {
                panic!("fake: interfering restore failed: {e}");
            }
        }
        let fault = Self::take_fault(state, Op::Restore)
            .or_else(|| Self::take_fault(state, Op::RestoreOf(table)));
        if let Some(fault) = fault {
            return Err(Self::fault_error(fault, program, Some(input)));
        }
        apply_restore(&mut state.tables, &state.ipsets, family, table, input).map_err(|stderr| {
            DataplaneError::RestoreFailed {
                program,
                status: "exit status 1".into(),
                stderr,
                input: input.to_string(),
            }
        })
    }

    fn ipset_save(&self) -> Result<String, DataplaneError> {
        let mut state = self.lock();
        state.calls.push(Call {
            argv: vec!["ipset".into(), "save".into()],
            stdin: None,
        });
        if let Some(fault) = Self::take_fault(&mut state, Op::IpsetSave) {
            return Err(Self::fault_error(fault, "ipset".into(), None));
        }
        let mut out = String::new();
        for (name, set) in &state.ipsets {
            out.push_str(&format!("create {name} {}\n", set.spec));
            for member in &set.members {
                out.push_str(&format!("add {name} {member}\n"));
            }
        }
        Ok(out)
    }

    fn ipset_restore(&self, input: &str) -> Result<(), DataplaneError> {
        let mut state = self.lock();
        let state = &mut *state;
        state.calls.push(Call {
            argv: vec!["ipset".into(), "restore".into(), "-exist".into()],
            stdin: Some(input.to_string()),
        });
        if let Some(fault) = Self::take_fault(state, Op::IpsetRestore) {
            return Err(Self::fault_error(fault, "ipset".into(), Some(input)));
        }
        apply_ipset(&state.tables, &mut state.ipsets, input).map_err(|stderr| {
            DataplaneError::RestoreFailed {
                program: "ipset".into(),
                status: "exit status 1".into(),
                stderr,
                input: input.to_string(),
            }
        })
    }

    fn backend(&self) -> Backend {
        self.backend
    }

    fn supports(&self, family: Family) -> bool {
        self.families.contains(&family)
    }
}

fn render_save(table: TableName, chains: &BTreeMap<String, FakeChain>) -> String {
    let mut out = format!("# Generated by fake-iptables-save\n*{}\n", table.as_str());
    let builtins = builtin_chains(table);
    let order: Vec<&String> = builtins
        .iter()
        .filter_map(|b| chains.get_key_value(*b).map(|(k, _)| k))
        .chain(chains.keys().filter(|k| !builtins.contains(&k.as_str())))
        .collect();
    for name in &order {
        let policy = chains[*name].policy.as_deref().unwrap_or("-");
        out.push_str(&format!(":{name} {policy} [0:0]\n"));
    }
    for name in &order {
        for rule in &chains[*name].rules {
            out.push_str(&format!("-A {name} {rule}\n"));
        }
    }
    out.push_str("COMMIT\n# Completed\n");
    out
}

/// Chains a rule jumps or goes to.
fn targets(rule: &str) -> impl Iterator<Item = &str> {
    let words: Vec<&str> = rule.split_whitespace().collect();
    let mut found = Vec::new();
    for pair in words.windows(2) {
        if matches!(pair[0], "-j" | "--jump" | "-g" | "--goto") {
            found.push(pair[1]);
        }
    }
    found.into_iter()
}

/// Sets a rule matches on.
fn sets_used(rule: &str) -> Vec<String> {
    let words: Vec<&str> = rule.split_whitespace().collect();
    words
        .windows(2)
        .filter(|p| p[0] == "--match-set")
        .map(|p| p[1].to_string())
        .collect()
}

/// Apply one `iptables-restore --noflush` input to a copy of the table; commit on `COMMIT`.
fn apply_restore(
    tables: &mut Tables,
    ipsets: &BTreeMap<String, FakeSet>,
    family: Family,
    table: TableName,
    input: &str,
) -> Result<(), String> {
    let mut work: Option<BTreeMap<String, FakeChain>> = None;
    for (index, raw_line) in input.lines().enumerate() {
        let n = index + 1;
        let line = raw_line.trim();
        let fail = |why: &str| format!("iptables-restore: line {n} failed: {why}");
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if name != table.as_str() {
                return Err(fail("unexpected table"));
            }
            work = Some(tables[&(family, table)].clone());
            continue;
        }
        let Some(chains) = work.as_mut() else {
            return Err(fail("no table specified"));
        };
        if line == "COMMIT" {
            check_commit(chains, ipsets).map_err(|why| fail(&why))?;
            tables.insert((family, table), work.take().unwrap_or_default());
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let name = words.next().ok_or_else(|| fail("bad chain line"))?;
            let policy = words.next().unwrap_or("-");
            match chains.get_mut(name) {
                Some(chain) if chain.policy.is_some() => {
                    if policy != "-" {
                        chain.policy = Some(policy.to_string());
                    }
                }
                // --noflush: declaring an existing user chain flushes it.
                Some(chain) => chain.rules.clear(),
                None => {
                    chains.insert(
                        name.to_string(),
                        FakeChain {
                            policy: None,
                            rules: Vec::new(),
                        },
                    );
                }
            }
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let verb = parts.next().unwrap_or_default();
        let chain_name = parts.next().ok_or_else(|| fail("missing chain"))?;
        let rest = parts.next().unwrap_or("").trim();
        match verb {
            "-A" | "--append" => {
                let chain = chains
                    .get_mut(chain_name)
                    .ok_or_else(|| fail("No chain/target/match by that name."))?;
                chain.rules.push(rest.to_string());
            }
            "-I" | "--insert" => {
                let chain = chains
                    .get_mut(chain_name)
                    .ok_or_else(|| fail("No chain/target/match by that name."))?;
                let (position, rule) = split_number(rest);
                let at = position.unwrap_or(1);
                if at == 0 || at > chain.rules.len() + 1 {
                    return Err(fail("Index of insertion too big."));
                }
                chain.rules.insert(at - 1, rule.to_string());
            }
            "-R" | "--replace" => {
                let chain = chains
                    .get_mut(chain_name)
                    .ok_or_else(|| fail("No chain/target/match by that name."))?;
                let (position, rule) = split_number(rest);
                let at = position.ok_or_else(|| fail("-R needs a rule number"))?;
                if at == 0 || at > chain.rules.len() {
                    return Err(fail("Index of replacement too big."));
                }
                chain.rules[at - 1] = rule.to_string();
            }
            "-D" | "--delete" => {
                let chain = chains
                    .get_mut(chain_name)
                    .ok_or_else(|| fail("No chain/target/match by that name."))?;
                match split_number(rest) {
                    (Some(at), "") => {
                        if at == 0 || at > chain.rules.len() {
                            return Err(fail("Index of deletion too big."));
                        }
                        chain.rules.remove(at - 1);
                    }
                    _ => {
                        let at = chain.rules.iter().position(|r| r == rest).ok_or_else(|| {
                            fail("Bad rule (does a matching rule exist in that chain?).")
                        })?;
                        chain.rules.remove(at);
                    }
                }
            }
            "-F" | "--flush" => {
                chains
                    .get_mut(chain_name)
                    .ok_or_else(|| fail("No chain/target/match by that name."))?
                    .rules
                    .clear();
            }
            "-X" | "--delete-chain" => {
                let chain = chains
                    .get(chain_name)
                    .ok_or_else(|| fail("No chain/target/match by that name."))?;
                if chain.policy.is_some() {
                    return Err(fail("cannot delete a built-in chain"));
                }
                if !chain.rules.is_empty() {
                    return Err(fail("Directory not empty."));
                }
                let referenced = chains
                    .values()
                    .flat_map(|c| c.rules.iter())
                    .any(|r| targets(r).any(|t| t == chain_name));
                if referenced {
                    return Err(fail("Too many links."));
                }
                chains.remove(chain_name);
            }
            _ => return Err(fail("unknown command")),
        }
    }
    if work.is_some() {
        return Err("iptables-restore: COMMIT expected at end of input".into());
    }
    Ok(())
}

/// What the kernel checks when a transaction commits: every jump target exists, every set a
/// rule matches on exists.
fn check_commit(
    chains: &BTreeMap<String, FakeChain>,
    ipsets: &BTreeMap<String, FakeSet>,
) -> Result<(), String> {
    for (name, chain) in chains {
        for rule in &chain.rules {
            for target in targets(rule) {
                // Lower-case-free names are targets (ACCEPT, MARK, ...) unless they are chains.
                let is_chain_like = target.starts_with("cali-") || target.contains('-');
                if is_chain_like && !chains.contains_key(target) {
                    return Err(format!("chain {name}: jump to missing chain {target}"));
                }
            }
            for set in sets_used(rule) {
                if !ipsets.contains_key(&set) {
                    return Err(format!("Set {set} doesn't exist."));
                }
            }
        }
    }
    Ok(())
}

fn split_number(rest: &str) -> (Option<usize>, &str) {
    let mut parts = rest.splitn(2, ' ');
    let first = parts.next().unwrap_or("");
    match first.parse::<usize>() {
        Ok(n) => (Some(n), parts.next().unwrap_or("").trim()),
        Err(_) => (None, rest),
    }
}

/// Apply `ipset restore -exist` input line by line (ipset is not transactional: lines before a
/// failure stay applied).
fn apply_ipset(
    tables: &Tables,
    ipsets: &mut BTreeMap<String, FakeSet>,
    input: &str,
) -> Result<(), String> {
    for (index, line) in input.lines().enumerate() {
        let n = index + 1;
        let fail = |why: &str| format!("ipset v7: Error in line {n}: {why}");
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["COMMIT"] => {}
            ["create", name, spec @ ..] => {
                let spec = spec.join(" ");
                match ipsets.get(*name) {
                    Some(existing)
                        if existing.spec.split_whitespace().next()
                            != spec.split_whitespace().next() =>
                    {
                        return Err(fail(
                            "Set cannot be created: set with the same name already exists",
                        ))
                    }
                    Some(_) => {}
                    None => {
                        ipsets.insert(
                            name.to_string(),
                            FakeSet {
                                spec,
                                members: BTreeSet::new(),
                            },
                        );
                    }
                }
            }
            ["add", name, member, ..] => {
                ipsets
                    .get_mut(*name)
                    .ok_or_else(|| fail("The set with the given name does not exist"))?
                    .members
                    // Stored as the kernel prints it back (`/32` of a single address dropped).
                    .insert(normalize_member(member));
            }
            ["del", name, member, ..] => {
                ipsets
                    .get_mut(*name)
                    .ok_or_else(|| fail("The set with the given name does not exist"))?
                    .members
                    .remove(&normalize_member(member));
            }
            ["flush", name] => {
                ipsets
                    .get_mut(*name)
                    .ok_or_else(|| fail("The set with the given name does not exist"))?
                    .members
                    .clear();
            }
            ["destroy", name] => {
                let in_use = tables
                    .values()
                    .flat_map(|t| t.values())
                    .flat_map(|c| c.rules.iter())
                    .any(|r| sets_used(r).iter().any(|s| s == name));
                if in_use {
                    return Err(fail(
                        "Set cannot be destroyed: it is in use by a kernel component",
                    ));
                }
                if ipsets.remove(*name).is_none() {
                    return Err(fail("The set with the given name does not exist"));
                }
            }
            ["swap", a, b] => {
                let first = ipsets
                    .remove(*a)
                    .ok_or_else(|| fail("The set with the given name does not exist"))?;
                let Some(second) = ipsets.remove(*b) else {
                    ipsets.insert(a.to_string(), first);
                    return Err(fail("The set with the given name does not exist"));
                };
                ipsets.insert(a.to_string(), second);
                ipsets.insert(b.to_string(), first);
            }
            _ => return Err(fail("Syntax error")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Family = Family::V4;
    const FILTER: TableName = TableName::Filter;

    #[test]
    fn restore_then_save_round_trips_rules() {
        let fake = FakeDataplane::default();
        fake.restore(
            F,
            FILTER,
            "*filter\n:cali-INPUT - -\n-A cali-INPUT -m comment --comment \"cali:abc\" -j ACCEPT\n\
             -I INPUT 1 -m comment --comment \"cali:hook\" -j cali-INPUT\nCOMMIT\n",
        )
        .unwrap();
        let text = fake.save(F, FILTER).unwrap();
        assert!(text.contains(":cali-INPUT - [0:0]\n"), "{text}");
        assert!(text.contains("-A INPUT -m comment --comment \"cali:hook\" -j cali-INPUT\n"));
        assert!(text.contains("-A cali-INPUT -m comment --comment \"cali:abc\" -j ACCEPT\n"));
        assert_eq!(fake.restores().len(), 1);
        assert_eq!(
            fake.restores()[0].argv[..2],
            [
                "iptables-legacy-restore".to_string(),
                "--noflush".to_string()
            ]
        );
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let fake = FakeDataplane::default();
        let err = fake
            .restore(
                F,
                FILTER,
                "*filter\n:cali-x - -\n-A cali-x -j cali-missing\nCOMMIT\n",
            )
            .unwrap_err();
        assert!(matches!(err, DataplaneError::RestoreFailed { .. }));
        assert_eq!(fake.rules(F, FILTER, "cali-x"), None);
    }

    #[test]
    fn a_referenced_or_non_empty_chain_cannot_be_deleted() {
        let fake = FakeDataplane::default();
        fake.external_restore(
            F,
            FILTER,
            "*filter\n:cali-a - -\n:cali-b - -\n-A cali-a -j cali-b\n-A cali-b -j DROP\nCOMMIT\n",
        );
        assert!(fake
            .restore(F, FILTER, "*filter\n-X cali-b\nCOMMIT\n")
            .is_err());
        assert!(fake
            .restore(F, FILTER, "*filter\n:cali-b - -\n-X cali-b\nCOMMIT\n")
            .is_err());
        fake.restore(
            F,
            FILTER,
            "*filter\n:cali-a - -\n:cali-b - -\n-X cali-a\n-X cali-b\nCOMMIT\n",
        )
        .unwrap();
        assert_eq!(fake.chains(F, FILTER), ["FORWARD", "INPUT", "OUTPUT"]);
    }

    #[test]
    fn delete_by_number_and_by_text() {
        let fake = FakeDataplane::default();
        fake.external_restore(
            F,
            FILTER,
            "*filter\n-A INPUT -j ACCEPT\n-A INPUT -j DROP\n-A INPUT -j REJECT\nCOMMIT\n",
        );
        fake.restore(
            F,
            FILTER,
            "*filter\n-D INPUT 1\n-D INPUT -j REJECT\nCOMMIT\n",
        )
        .unwrap();
        assert_eq!(fake.rules(F, FILTER, "INPUT").unwrap(), ["-j DROP"]);
    }

    #[test]
    fn sets_must_exist_before_use_and_cannot_be_destroyed_in_use() {
        let fake = FakeDataplane::default();
        let rule = "*filter\n-A INPUT -m set --match-set cali40s:x src -j DROP\nCOMMIT\n";
        assert!(fake.restore(F, FILTER, rule).is_err());
        fake.ipset_restore("create cali40s:x hash:net family inet maxelem 1048576\nadd cali40s:x 198.51.100.0/24\n")
            .unwrap();
        fake.restore(F, FILTER, rule).unwrap();
        assert!(fake.ipset_restore("destroy cali40s:x\n").is_err());
        assert_eq!(
            fake.ipset_save().unwrap(),
            "create cali40s:x hash:net family inet maxelem 1048576\nadd cali40s:x 198.51.100.0/24\n"
        );
    }

    #[test]
    fn injected_faults_fire_once_in_order() {
        let fake = FakeDataplane::default();
        fake.inject(Op::Restore, Fault::Busy);
        fake.inject(Op::Restore, Fault::Fail("boom".into()));
        let input = "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n";
        assert!(matches!(
            fake.restore(F, FILTER, input),
            Err(DataplaneError::Busy { .. })
        ));
        match fake.restore(F, FILTER, input) {
            Err(DataplaneError::RestoreFailed {
                stderr,
                input: kept,
                ..
            }) => {
                assert_eq!(stderr, "boom");
                assert_eq!(kept, input);
            }
            other => panic!("expected a restore failure, got {other:?}"),
        }
        fake.restore(F, FILTER, input).unwrap();
        assert_eq!(fake.rules(F, FILTER, "INPUT").unwrap(), ["-j ACCEPT"]);
        assert_eq!(fake.restores().len(), 3);
    }
}
