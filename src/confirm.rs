//! Timed confirmation (`apply --confirm SECS`, `hostfw confirm`): a snapshot of hostfw's own
//! kernel state (our chains, our hook rules at their positions, our ipsets) taken before an
//! apply, the pending-confirmation file the daemon and `status` read, the detached watcher that
//! restores the snapshot when the deadline passes, and the restore itself. Kernel access only
//! through `&dyn Dataplane`; the files live in the run directory.
//!
//! Files in the run directory (documented for the daemon and `status`):
//! - `confirm-pending.json`: present while a confirmation is pending. JSON object
//!   `{"token": str, "created_unix": u64, "deadline_unix": u64, "seconds": u64,
//!   "backend": "legacy"|"nft", "watcher_pid": u32|null}`. While it exists and
//!   `deadline_unix + PENDING_GRACE_SECS` has not passed, the daemon must not reconcile.
//! - `confirm-rolled-back.json`: written by the watcher after a rollback,
//!   `{"token": str, "rolled_back_unix": u64}`. The kernel then holds the old rules while the
//!   policy directory still holds the unconfirmed ones: the daemon must not reconcile until the
//!   policy directory changes or it is reloaded (SIGHUP), and then removes the file
//!   (`resume_after_edit`).
//! - `confirm-snapshot.json`: the state to restore (private to this module).
//! - `confirm.log`: what the watcher did (it has no terminal).
//!
//! The daemon asks `daemon_hold` before each reconcile; `status` shows `status_line`.

use crate::dataplane::{Backend, Dataplane, DataplaneError};
use crate::ruleset::plan::{self, is_owned_chain, PlanOptions};
use crate::ruleset::restore::{kernel_chain_rank, RestoreBuilder};
use crate::ruleset::{parse_ipset_save, Family, Ipset, LiveTable, Ruleset, SaveError, TableName};
use crate::sync::{self, Live, SyncError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A confirmation is pending (read by the daemon and `status`).
pub const PENDING_FILE: &str = "confirm-pending.json";
/// The state a rollback restores.
pub const SNAPSHOT_FILE: &str = "confirm-snapshot.json";
/// The watcher's log.
pub const LOG_FILE: &str = "confirm.log";
/// A rollback happened; the daemon holds off until the policies change.
pub const ROLLED_BACK_FILE: &str = "confirm-rolled-back.json";

/// After the deadline the watcher restores within moments; if it died instead, the pending file
/// stops pausing the daemon this long after the deadline.
pub const PENDING_GRACE_SECS: u64 = 30;

/// A pending confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub token: String,
    pub created_unix: u64,
    pub deadline_unix: u64,
    pub seconds: u64,
    pub backend: String,
    pub watcher_pid: Option<u32>,
}

impl Pending {
    /// True while the daemon must hold off: until the deadline plus grace.
    pub fn pauses_daemon(&self, now_unix: u64) -> bool {
        now_unix < self.deadline_unix.saturating_add(PENDING_GRACE_SECS)
    }
}

/// The record of a rollback the daemon must respect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    pub token: String,
    pub rolled_back_unix: u64,
}

/// Why the daemon must not reconcile now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// An `apply --confirm` waits for `hostfw confirm`.
    Pending(Pending),
    /// An unconfirmed apply was rolled back; wait for the policy directory to change.
    RolledBack(RolledBack),
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::Pending(p) => write!(
                f,
                "apply --confirm pending: run `hostfw confirm` before {} (unix time) or the \
                 previous rules are restored; reconciliation paused",
                p.deadline_unix
            ),
            Hold::RolledBack(r) => write!(
                f,
                "an unconfirmed apply was rolled back at {} (unix time); reconciliation paused \
                 until the policy directory changes or hostfw is reloaded",
                r.rolled_back_unix
            ),
        }
    }
}

/// What the daemon must respect right now (`None`: reconcile as usual). A pending file whose
/// deadline and grace have passed (its watcher died) no longer holds.
pub fn daemon_hold(run_dir: &Path, now_unix: u64) -> Option<Hold> {
    if let Ok(Some(p)) = pending(run_dir) {
        if p.pauses_daemon(now_unix) {
            return Some(Hold::Pending(p));
        }
    }
    match read_json::<RolledBack>(&run_dir.join(ROLLED_BACK_FILE)) {
        Ok(Some(r)) => Some(Hold::RolledBack(r)),
        _ => None,
    }
}

/// The policy directory changed (or SIGHUP): a rollback no longer holds the daemon.
pub fn resume_after_edit(run_dir: &Path) -> Result<(), ConfirmError> {
    let path = run_dir.join(ROLLED_BACK_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ConfirmError::File { path, source }),
    }
}

/// One line for `hostfw status` (None when nothing is pending or held).
pub fn status_line(run_dir: &Path, now_unix: u64) -> Option<String> {
    match daemon_hold(run_dir, now_unix)? {
        Hold::Pending(p) => Some(format!(
            "confirmation pending: rollback in {} s unless `hostfw confirm` runs (watcher pid {})",
            p.deadline_unix.saturating_sub(now_unix),
            p.watcher_pid
                .map_or_else(|| "?".to_string(), |pid| pid.to_string())
        )),
        h @ Hold::RolledBack(_) => Some(h.to_string()),
    }
}

/// Record a rollback for the daemon (see `ROLLED_BACK_FILE`).
pub fn record_rollback(run_dir: &Path, token: &str) -> Result<(), ConfirmError> {
    write_json(
        &run_dir.join(ROLLED_BACK_FILE),
        &RolledBack {
            token: token.to_string(),
            rolled_back_unix: now_unix(),
        },
    )
}

/// The shared lock, waiting at most `timeout`: a daemon holds it for its whole life, and a
/// rollback must not wait for it forever (a pending confirmation pauses the daemon's writes).
pub fn acquire_within(path: &Path, timeout: Duration) -> Option<crate::lock::LockGuard> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(crate::lock::acquire(&path, |_| {}));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(guard)) => Some(guard),
        _ => None,
    }
}

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

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("reading hostfw's current state: {0}")]
    Save(#[source] DataplaneError),
    #[error("reading hostfw's current state: {0}")]
    Read(#[source] SyncError),
    #[error("the snapshot's ipsets cannot be read: {0}")]
    SnapshotIpsets(#[source] SaveError),
    #[error("restoring the snapshot: {0}")]
    Restore(#[source] DataplaneError),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a valid confirmation file: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot start the rollback watcher: {0}")]
    Spawn(#[source] io::Error),
}

/// Our part of one live table: `cali-` chains with their rules, and hook rules (rules in other
/// chains carrying a `cali:` hash) with the count of foreign rules before each. Pure.
pub fn saved_table(family: Family, table: TableName, live: &LiveTable) -> SavedTable {
    let mut chains = BTreeMap::new();
    let mut hooks = Vec::new();
    for (name, chain) in &live.chains {
        if is_owned_chain(name) {
            let rules = chain.rules.iter().map(|r| r.text.clone()).collect();
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
        family: family_number(family),
        table: table.as_str().to_string(),
        chains,
        hooks,
    }
}

/// Read hostfw's current state through the dataplane.
pub fn snapshot(dp: &dyn Dataplane) -> Result<Snapshot, ConfirmError> {
    let live = sync::read_live(dp).map_err(ConfirmError::Read)?;
    let mut tables = Vec::new();
    for state in &live.tables {
        for (table, lt) in &state.tables {
            tables.push(saved_table(state.family, *table, lt));
        }
    }
    let ipsets = dp.ipset_save().map_err(ConfirmError::Save)?;
    Ok(Snapshot { tables, ipsets })
}

/// Everything a rollback writes, in order: `ipsets_before`, each table's input (one
/// `iptables-restore` call per table), `ipsets_after`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollbackPlan {
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
pub fn rollback_plan(
    snap: &Snapshot,
    live: &Live,
    nft: bool,
) -> Result<RollbackPlan, ConfirmError> {
    let empty = LiveTable::default();
    let mut tables = Vec::new();
    for state in &live.tables {
        for table in TableName::ALL {
            let live_table = state.tables.get(&table).unwrap_or(&empty);
            let saved = snap
                .tables
                .iter()
                .find(|t| t.family == family_number(state.family) && t.table == table.as_str());
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
fn ipset_rollback(
    snap: &Snapshot,
    live: &Live,
    nft: bool,
) -> Result<(String, String), ConfirmError> {
    let saved = parse_ipset_save(&snap.ipsets).map_err(ConfirmError::SnapshotIpsets)?;
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

/// Passes a rollback makes before giving up: a failed write (lock held, a concurrent change
/// making a delete-by-value miss) is retried after re-reading the kernel.
const ROLLBACK_ATTEMPTS: u32 = 3;

/// Put the snapshot back without ever leaving the host more open than before or after: each
/// table changes in one transaction (see `rollback_plan`), sets are ready before any rule uses
/// them and destroyed only after none does.
pub fn restore(dp: &dyn Dataplane, snap: &Snapshot) -> Result<(), ConfirmError> {
    let mut attempt = 1;
    loop {
        match restore_once(dp, snap) {
            Err(ConfirmError::Restore(e)) if e.is_retryable() && attempt < ROLLBACK_ATTEMPTS => {
                log::warn!("rollback attempt {attempt} failed, re-reading and retrying: {e}");
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn restore_once(dp: &dyn Dataplane, snap: &Snapshot) -> Result<(), ConfirmError> {
    let live = sync::read_live(dp).map_err(ConfirmError::Read)?;
    let plan = rollback_plan(snap, &live, dp.backend() == Backend::Nft)?;
    if !plan.ipsets_before.is_empty() {
        dp.ipset_restore(&plan.ipsets_before)
            .map_err(ConfirmError::Restore)?;
    }
    for (family, table, input) in &plan.tables {
        dp.restore(*family, *table, input)
            .map_err(ConfirmError::Restore)?;
    }
    if !plan.ipsets_after.is_empty() {
        dp.ipset_restore(&plan.ipsets_after)
            .map_err(ConfirmError::Restore)?;
    }
    Ok(())
}

fn family_number(f: Family) -> u8 {
    match f {
        Family::V4 => 4,
        Family::V6 => 6,
    }
}

/// Where the pending confirmation lives in `run_dir`.
pub fn pending_path(run_dir: &Path) -> PathBuf {
    run_dir.join(PENDING_FILE)
}

/// Where the snapshot lives in `run_dir`.
pub fn snapshot_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SNAPSHOT_FILE)
}

/// Where the watcher logs in `run_dir`.
pub fn log_path(run_dir: &Path) -> PathBuf {
    run_dir.join(LOG_FILE)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, ConfirmError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| ConfirmError::Corrupt {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfirmError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write atomically (temp file + rename) so readers never see half a file.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ConfirmError> {
    let file_err = |source| ConfirmError::File {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(file_err)?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| file_err(io::Error::other(e)))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(file_err)?;
    std::fs::rename(&tmp, path).map_err(file_err)
}

/// The pending confirmation, if any (what the daemon and `status` call).
pub fn pending(run_dir: &Path) -> Result<Option<Pending>, ConfirmError> {
    read_json(&pending_path(run_dir))
}

/// Record a pending confirmation (atomically).
pub fn write_pending(run_dir: &Path, p: &Pending) -> Result<(), ConfirmError> {
    write_json(&pending_path(run_dir), p)
}

/// The saved snapshot, if any.
pub fn read_snapshot(run_dir: &Path) -> Result<Option<Snapshot>, ConfirmError> {
    read_json(&snapshot_path(run_dir))
}

/// Save the snapshot (atomically).
pub fn write_snapshot(run_dir: &Path, s: &Snapshot) -> Result<(), ConfirmError> {
    write_json(&snapshot_path(run_dir), s)
}

/// Remove the pending file and the snapshot (confirmed, or rolled back).
pub fn clear(run_dir: &Path) -> Result<(), ConfirmError> {
    for path in [pending_path(run_dir), snapshot_path(run_dir)] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ConfirmError::File { path, source }),
        }
    }
    Ok(())
}

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// A token unique enough to tell one pending confirmation from the next.
fn new_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// Arm a confirmation before an apply: snapshot the current state (an already pending
/// confirmation keeps its older snapshot: rolling back goes to the last confirmed state), write
/// the pending file, start the detached watcher. The caller holds the lock and applies next.
pub fn arm(dp: &dyn Dataplane, run_dir: &Path, seconds: u64) -> Result<Pending, ConfirmError> {
    let keep_old = pending(run_dir)?.is_some() && read_snapshot(run_dir)?.is_some();
    if !keep_old {
        write_snapshot(run_dir, &snapshot(dp)?)?;
    }
    let now = now_unix();
    let mut p = Pending {
        token: new_token(),
        created_unix: now,
        deadline_unix: now + seconds,
        seconds,
        backend: dp.backend().as_str().to_string(),
        watcher_pid: None,
    };
    // The watcher reads the pending file to learn its deadline: write it first.
    write_pending(run_dir, &p)?;
    let pid = spawn_watcher(run_dir, &p)?;
    p.watcher_pid = Some(pid);
    write_pending(run_dir, &p)?;
    Ok(p)
}

/// Start `hostfw confirm-watch` in its own session (setsid: no controlling terminal, so the
/// SSH session ending sends it no SIGHUP), its output going to `confirm.log`. Nobody waits for
/// it: when this process exits it is re-parented to init.
fn spawn_watcher(run_dir: &Path, p: &Pending) -> Result<u32, ConfirmError> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(ConfirmError::Spawn)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(run_dir))
        .map_err(|source| ConfirmError::File {
            path: log_path(run_dir),
            source,
        })?;
    let log2 = log.try_clone().map_err(ConfirmError::Spawn)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--run-dir")
        .arg(run_dir)
        .args([
            "--backend",
            &p.backend,
            "confirm-watch",
            "--token",
            &p.token,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(ConfirmError::Spawn)?;
    Ok(child.id())
}

/// What the watcher found when it woke up for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// Confirmed (or superseded by a newer confirmation): nothing to do.
    Stood,
    /// The deadline passed: restore.
    Expired,
}

/// Wait until the pending confirmation `token` is confirmed/superseded or its deadline passes.
pub fn wait(run_dir: &Path, token: &str) -> Result<WatchEnd, ConfirmError> {
    loop {
        let Some(p) = pending(run_dir)? else {
            return Ok(WatchEnd::Stood);
        };
        if p.token != token {
            return Ok(WatchEnd::Stood);
        }
        let now = now_unix();
        if now >= p.deadline_unix {
            return Ok(WatchEnd::Expired);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dataplane::fake::{Call, FakeDataplane};
    use crate::ruleset::parse_save;

    #[test]
    fn saved_table_keeps_our_chains_and_hook_positions() {
        let save = "*filter\n\
            :INPUT ACCEPT [0:0]\n\
            :FORWARD ACCEPT [0:0]\n\
            :cali-INPUT - [0:0]\n\
            :f2b-sshd - [0:0]\n\
            -A INPUT -j f2b-sshd\n\
            -A INPUT -m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" -j cali-INPUT\n\
            -A INPUT -p tcp -j ACCEPT\n\
            -A FORWARD -m comment --comment \"cali:S93hcgKJrXEqnTfs\" -m mark --mark 0x10000/0x10000 -j ACCEPT\n\
            -A cali-INPUT -m comment --comment \"cali:abc\" -j DROP\n\
            -A f2b-sshd -j RETURN\n\
            COMMIT\n";
        let t = saved_table(Family::V4, TableName::Filter, &parse_save(save).unwrap());
        assert_eq!((t.family, t.table.as_str()), (4, "filter"));
        assert_eq!(
            t.chains,
            BTreeMap::from([(
                "cali-INPUT".to_string(),
                vec!["-m comment --comment \"cali:abc\" -j DROP".to_string()]
            )])
        );
        // FORWARD's hook has no foreign rule before it, INPUT's one (the f2b jump).
        assert_eq!(
            t.hooks,
            [
                SavedHook {
                    chain: "FORWARD".into(),
                    foreign_before: 0,
                    text: "-m comment --comment \"cali:S93hcgKJrXEqnTfs\" -m mark --mark 0x10000/0x10000 -j ACCEPT".into(),
                },
                SavedHook {
                    chain: "INPUT".into(),
                    foreign_before: 1,
                    text: "-m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" -j cali-INPUT".into(),
                },
            ]
        );
    }

    const F: Family = Family::V4;

    /// The confirmed state: foreign rules around our INPUT hook, two chains of ours in filter
    /// (one using a set), one in mangle; nothing in raw.
    fn seed_old(dp: &FakeDataplane) {
        dp.external_ipset_restore(
            "create cali40s:aAAAAAAAAAAAAAAAAAAAAAA hash:net family inet hashsize 1024 maxelem 1048576\n\
             add cali40s:aAAAAAAAAAAAAAAAAAAAAAA 198.51.100.0/24\n",
        );
        dp.external_restore(
            F,
            TableName::Filter,
            "*filter\n:cali-INPUT - [0:0]\n:cali-old - [0:0]\n\
             -A INPUT -s 203.0.113.9/32 -j DROP\n\
             -A INPUT -m comment --comment \"cali:h1\" -j cali-INPUT\n\
             -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n\
             -A cali-INPUT -m comment --comment \"cali:r1\" -m set --match-set cali40s:aAAAAAAAAAAAAAAAAAAAAAA src -j ACCEPT\n\
             -A cali-INPUT -m comment --comment \"cali:r2\" -j cali-old\n\
             -A cali-old -m comment --comment \"cali:r3\" -j DROP\n\
             COMMIT\n",
        );
        dp.external_restore(
            F,
            TableName::Mangle,
            "*mangle\n:cali-PREROUTING - [0:0]\n\
             -A PREROUTING -m comment --comment \"cali:m1\" -j cali-PREROUTING\n\
             -A cali-PREROUTING -m comment --comment \"cali:m2\" -j ACCEPT\n\
             COMMIT\n",
        );
    }

    /// The unconfirmed apply: filter rewritten (new chain on a new set, `cali-old` gone, the hook
    /// moved to the top), a chain and hook added to raw, a member of `cali40s:aAAAAAAAAAAAAAAAAAAAAAA` changed;
    /// mangle untouched.
    fn apply_new(dp: &FakeDataplane) {
        dp.external_ipset_restore(
            "create cali40s:bAAAAAAAAAAAAAAAAAAAAAA hash:net family inet hashsize 1024 maxelem 1048576\n\
             add cali40s:bAAAAAAAAAAAAAAAAAAAAAA 203.0.113.0/24\nadd cali40s:aAAAAAAAAAAAAAAAAAAAAAA 198.51.100.7\ndel cali40s:aAAAAAAAAAAAAAAAAAAAAAA 198.51.100.0/24\n",
        );
        dp.external_restore(
            F,
            TableName::Filter,
            "*filter\n:cali-INPUT - [0:0]\n:cali-new - [0:0]\n:cali-old - [0:0]\n\
             -A cali-new -m comment --comment \"cali:n1\" -m set --match-set cali40s:bAAAAAAAAAAAAAAAAAAAAAA src -j ACCEPT\n\
             -A cali-INPUT -m comment --comment \"cali:r9\" -j cali-new\n\
             -X cali-old\n\
             -D INPUT -m comment --comment \"cali:h1\" -j cali-INPUT\n\
             -I INPUT 1 -m comment --comment \"cali:h2\" -j cali-INPUT\n\
             COMMIT\n",
        );
        dp.external_restore(
            F,
            TableName::Raw,
            "*raw\n:cali-PREROUTING - [0:0]\n\
             -A cali-PREROUTING -m comment --comment \"cali:q1\" -j ACCEPT\n\
             -A PREROUTING -m comment --comment \"cali:q2\" -j cali-PREROUTING\n\
             COMMIT\n",
        );
    }

    fn writes(dp: &FakeDataplane) -> Vec<Call> {
        dp.calls()
            .into_iter()
            .filter(|c| c.is_restore() || c.is_ipset_restore())
            .collect()
    }

    fn rollback_scenario(backend: crate::dataplane::Backend) -> (FakeDataplane, Vec<Call>) {
        let dp = FakeDataplane::new(backend);
        seed_old(&dp);
        let snap = snapshot(&dp).unwrap();
        apply_new(&dp);
        assert_ne!(snapshot(&dp).unwrap(), snap);
        dp.clear_calls();
        restore(&dp, &snap).unwrap();
        // Back exactly where we were: chains, rules, hook positions among foreign rules, sets.
        assert_eq!(snapshot(&dp).unwrap(), snap);
        assert_eq!(
            dp.rules(F, TableName::Filter, "INPUT").unwrap(),
            [
                "-s 203.0.113.9/32 -j DROP",
                "-m comment --comment \"cali:h1\" -j cali-INPUT",
                "-p tcp -m tcp --dport 22 -j ACCEPT",
            ]
        );
        assert_eq!(dp.sets(), ["cali40s:aAAAAAAAAAAAAAAAAAAAAAA"]);
        let w = writes(&dp);
        // Sets first, then exactly one restore per changed table (raw and filter of IPv4;
        // mangle and IPv6 already match), then the destruction of the set nobody uses.
        let kinds: Vec<String> = w.iter().map(|c| c.argv[0].clone()).collect();
        let restore = match backend {
            crate::dataplane::Backend::Legacy => "iptables-legacy-restore",
            crate::dataplane::Backend::Nft => "iptables-nft-restore",
        };
        assert_eq!(kinds, ["ipset", restore, restore, "ipset"], "{w:#?}");
        let before = w[0].stdin.clone().unwrap();
        assert!(
            before.contains("add cali40s:aAAAAAAAAAAAAAAAAAAAAAA 198.51.100.0/24"),
            "{before}"
        );
        assert!(!before.contains("destroy"), "{before}");
        assert_eq!(
            w[3].stdin.as_deref(),
            Some("destroy cali40s:bAAAAAAAAAAAAAAAAAAAAAA\n")
        );
        assert!(w[1].stdin.as_deref().unwrap().starts_with("*raw\n"));
        (dp, w)
    }

    /// Every line of a filter rollback that removes the new state or recreates the old one.
    fn assert_filter_removes_and_recreates(txn: &str) {
        for line in [
            ":cali-INPUT - [0:0]",
            ":cali-new - [0:0]",
            ":cali-old - [0:0]",
            "-D INPUT -m comment --comment \"cali:h2\" -j cali-INPUT",
            "-A cali-INPUT -m comment --comment \"cali:r1\" -m set --match-set cali40s:aAAAAAAAAAAAAAAAAAAAAAA src -j ACCEPT",
            "-A cali-INPUT -m comment --comment \"cali:r2\" -j cali-old",
            "-A cali-old -m comment --comment \"cali:r3\" -j DROP",
            // One foreign rule preceded the hook then, two are there now: after the first.
            "-I INPUT 2 -m comment --comment \"cali:h1\" -j cali-INPUT",
        ] {
            assert!(txn.lines().any(|l| l == line), "missing {line:?} in\n{txn}");
        }
        // The deletions come before the re-creation.
        let pos = |needle: &str| txn.find(needle).unwrap();
        assert!(pos("-D INPUT") < pos("-A cali-INPUT") && pos("-D INPUT") < pos("-I INPUT 2"));
    }

    #[test]
    fn legacy_rollback_is_one_transaction_per_table() {
        let (_, w) = rollback_scenario(crate::dataplane::Backend::Legacy);
        let filter = w[2].stdin.clone().unwrap();
        assert_eq!(filter.matches("COMMIT").count(), 1, "{filter}");
        assert!(filter.starts_with("*filter\n"), "{filter}");
        assert_filter_removes_and_recreates(&filter);
        assert!(filter.ends_with("-X cali-new\nCOMMIT\n"), "{filter}");
        assert_eq!(
            w[1].stdin.as_deref(),
            Some(
                "*raw\n:cali-PREROUTING - [0:0]\n\
                 -D PREROUTING -m comment --comment \"cali:q2\" -j cali-PREROUTING\n\
                 -X cali-PREROUTING\nCOMMIT\n"
            )
        );
    }

    #[test]
    fn nft_rollback_deletes_chains_in_a_second_transaction() {
        let (_, w) = rollback_scenario(crate::dataplane::Backend::Nft);
        let filter = w[2].stdin.clone().unwrap();
        let txns: Vec<&str> = filter.split_inclusive("COMMIT\n").collect();
        assert_eq!(txns.len(), 2, "{filter}");
        assert_filter_removes_and_recreates(txns[0]);
        assert!(!txns[0].contains("-X"), "{}", txns[0]);
        assert_eq!(txns[1], "*filter\n-X cali-new\nCOMMIT\n");
        assert_eq!(
            w[1].stdin.as_deref(),
            Some(
                "*raw\n:cali-PREROUTING - [0:0]\n\
                 -D PREROUTING -m comment --comment \"cali:q2\" -j cali-PREROUTING\n\
                 COMMIT\n*raw\n-X cali-PREROUTING\nCOMMIT\n"
            )
        );
    }

    #[test]
    fn rollback_after_a_flush_recreates_everything_in_one_write_per_table() {
        let dp = FakeDataplane::new(crate::dataplane::Backend::Legacy);
        seed_old(&dp);
        let snap = snapshot(&dp).unwrap();
        crate::sync::flush(&dp, &crate::sync::SyncOptions::default()).unwrap();
        dp.clear_calls();
        restore(&dp, &snap).unwrap();
        let after = snapshot(&dp).unwrap();
        assert_eq!(after.tables, snap.tables);
        // The set is recreated (with hostfw's own create options), same kind and members.
        assert_eq!(
            parse_ipset_save(&after.ipsets).unwrap(),
            parse_ipset_save(&snap.ipsets).unwrap()
        );
        let tables: Vec<String> = dp
            .restores()
            .iter()
            .map(|c| c.stdin.clone().unwrap().lines().next().unwrap().to_string())
            .collect();
        assert_eq!(tables, ["*mangle", "*filter"]);
    }

    #[test]
    fn hooks_survive_foreign_rules_disappearing_and_foreign_sets_stay() {
        let dp = FakeDataplane::new(crate::dataplane::Backend::Legacy);
        seed_old(&dp);
        let snap = snapshot(&dp).unwrap();
        apply_new(&dp);
        // Meanwhile an admin removed both foreign INPUT rules and added one using a set of
        // ours that the snapshot does not have.
        dp.external_restore(
            F,
            TableName::Filter,
            "*filter\n-D INPUT -s 203.0.113.9/32 -j DROP\n-D INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n\
             -A INPUT -m set --match-set cali40s:bAAAAAAAAAAAAAAAAAAAAAA src -j DROP\nCOMMIT\n",
        );
        restore(&dp, &snap).unwrap();
        // The hook had one foreign rule before it; none of those is left, so it goes first.
        assert_eq!(
            dp.rules(F, TableName::Filter, "INPUT").unwrap(),
            [
                "-m set --match-set cali40s:bAAAAAAAAAAAAAAAAAAAAAA src -j DROP",
                "-m comment --comment \"cali:h1\" -j cali-INPUT",
            ]
        );
        assert_eq!(
            dp.sets(),
            [
                "cali40s:aAAAAAAAAAAAAAAAAAAAAAA",
                "cali40s:bAAAAAAAAAAAAAAAAAAAAAA"
            ]
        );
        assert_eq!(
            dp.set_members("cali40s:aAAAAAAAAAAAAAAAAAAAAAA")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["198.51.100.0/24"]
        );
    }

    #[test]
    fn nothing_to_roll_back_writes_nothing() {
        let dp = FakeDataplane::new(crate::dataplane::Backend::Nft);
        seed_old(&dp);
        let snap = snapshot(&dp).unwrap();
        dp.clear_calls();
        restore(&dp, &snap).unwrap();
        assert!(writes(&dp).is_empty(), "{:#?}", dp.calls());
    }

    #[test]
    fn a_failed_write_is_retried_from_a_fresh_read() {
        use crate::dataplane::fake::{Fault, Op};
        let dp = FakeDataplane::new(crate::dataplane::Backend::Legacy);
        seed_old(&dp);
        let snap = snapshot(&dp).unwrap();
        apply_new(&dp);
        dp.inject(Op::Restore, Fault::Busy);
        restore(&dp, &snap).unwrap();
        assert_eq!(snapshot(&dp).unwrap(), snap);
    }

    #[test]
    fn holds_for_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        assert_eq!(daemon_hold(run, 1000), None);
        let p = Pending {
            token: "t1".into(),
            created_unix: 1000,
            deadline_unix: 1010,
            seconds: 10,
            backend: "legacy".into(),
            watcher_pid: Some(42),
        };
        write_pending(run, &p).unwrap();
        assert_eq!(daemon_hold(run, 1005), Some(Hold::Pending(p.clone())));
        let line = status_line(run, 1005).unwrap();
        assert!(
            line.contains("rollback in 5 s") && line.contains("pid 42"),
            "{line}"
        );
        // A dead watcher's file stops holding after the grace period.
        assert_eq!(daemon_hold(run, 1010 + PENDING_GRACE_SECS), None);
        clear(run).unwrap();
        record_rollback(run, "t1").unwrap();
        assert!(matches!(daemon_hold(run, 2000), Some(Hold::RolledBack(_))));
        resume_after_edit(run).unwrap();
        assert_eq!(daemon_hold(run, 2000), None);
        assert_eq!(status_line(run, 2000), None);
    }

    #[test]
    fn pending_pauses_until_grace_ends() {
        let p = Pending {
            token: "t".into(),
            created_unix: 100,
            deadline_unix: 110,
            seconds: 10,
            backend: "nft".into(),
            watcher_pid: None,
        };
        assert!(p.pauses_daemon(105));
        assert!(p.pauses_daemon(110 + PENDING_GRACE_SECS - 1));
        assert!(!p.pauses_daemon(110 + PENDING_GRACE_SECS));
    }
}
