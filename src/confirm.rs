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

use crate::dataplane::{Dataplane, DataplaneError};
use crate::ruleset::{Family, TableName};
use crate::sync::{self, SyncError, SyncOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// One table of one family as `iptables-save` printed it, reduced to restore input for our
/// part only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTable {
    /// 4 or 6.
    pub family: u8,
    /// `raw`, `mangle` or `filter`.
    pub table: String,
    /// `iptables-restore --noflush` input recreating our chains and hook rules (empty when we
    /// had nothing in this table).
    pub restore: String,
}

/// hostfw's kernel state at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub tables: Vec<SavedTable>,
    /// `ipset restore` input for our sets (`create` and `add` lines).
    pub ipsets: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("reading hostfw's current state: {0}")]
    Save(#[source] DataplaneError),
    #[error("restoring the snapshot: {0}")]
    Restore(#[source] DataplaneError),
    #[error("removing the new rules before restoring: {0}")]
    Flush(#[source] SyncError),
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

/// Reduce one table's `iptables-save` text to restore input for what hostfw owns: `cali-`
/// chains with their rules, and hook rules (rules in other chains carrying a `cali:` hash
/// comment) at their positions among the foreign rules: `-A` when nothing foreign follows them,
/// `-I CHAIN N` otherwise. Pure.
pub fn reduce_save(save: &str, table: TableName) -> String {
    let mut chains: Vec<&str> = Vec::new();
    let mut rules: Vec<String> = Vec::new();
    // Per kernel chain: each rule, ours or not, in order.
    let mut kernel: BTreeMap<&str, Vec<(bool, &str)>> = BTreeMap::new();
    let mut kernel_order: Vec<&str> = Vec::new();
    for line in save.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or("");
            if name.starts_with("cali-") {
                chains.push(name);
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("-A ") else {
            continue;
        };
        let chain = rest.split_whitespace().next().unwrap_or("");
        if chain.starts_with("cali-") {
            rules.push(line.to_string());
        } else {
            let ours = line.contains("--comment \"cali:") || line.contains("--comment cali:");
            if !kernel.contains_key(chain) {
                kernel_order.push(chain);
            }
            kernel.entry(chain).or_default().push((ours, line));
        }
    }
    let mut hooks = Vec::new();
    for chain in kernel_order {
        let entries = &kernel[chain];
        for (i, (ours, line)) in entries.iter().enumerate() {
            if !ours {
                continue;
            }
            let foreign_after = entries[i + 1..].iter().any(|(o, _)| !o);
            if foreign_after {
                let body = &line["-A ".len() + chain.len()..];
                hooks.push(format!("-I {chain} {}{body}", i + 1));
            } else {
                hooks.push(line.to_string());
            }
        }
    }
    if chains.is_empty() && hooks.is_empty() {
        return String::new();
    }
    let mut out = format!("*{}\n", table.as_str());
    for c in &chains {
        out.push_str(&format!(":{c} - [0:0]\n"));
    }
    for r in rules {
        out.push_str(&r);
        out.push('\n');
    }
    for h in hooks {
        out.push_str(&h);
        out.push('\n');
    }
    out.push_str("COMMIT\n");
    out
}

/// Read hostfw's current state through the dataplane.
pub fn snapshot(dp: &dyn Dataplane) -> Result<Snapshot, ConfirmError> {
    let mut tables = Vec::new();
    for family in [Family::V4, Family::V6] {
        if !dp.supports(family) {
            continue;
        }
        for table in TableName::ALL {
            let save = dp.save(family, table).map_err(ConfirmError::Save)?;
            tables.push(SavedTable {
                family: family_number(family),
                table: table.as_str().to_string(),
                restore: reduce_save(&save, table),
            });
        }
    }
    let ipsets = dp.ipset_save().map_err(ConfirmError::Save)?;
    Ok(Snapshot { tables, ipsets })
}

/// Put the snapshot back: remove everything hostfw owns now, then recreate the sets and the
/// tables as they were.
pub fn restore(dp: &dyn Dataplane, snap: &Snapshot) -> Result<(), ConfirmError> {
    sync::flush(dp, &SyncOptions::default()).map_err(ConfirmError::Flush)?;
    if !snap.ipsets.trim().is_empty() {
        dp.ipset_restore(&snap.ipsets)
            .map_err(ConfirmError::Restore)?;
    }
    for t in &snap.tables {
        let family = if t.family == 6 {
            Family::V6
        } else {
            Family::V4
        };
        let Some(table) = TableName::ALL.into_iter().find(|n| n.as_str() == t.table) else {
            continue;
        };
        if t.restore.is_empty() || !dp.supports(family) {
            continue;
        }
        dp.restore(family, table, &t.restore)
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

    #[test]
    fn reduce_keeps_our_chains_and_hooks_in_place() {
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
        assert_eq!(
            reduce_save(save, TableName::Filter),
            "*filter\n\
             :cali-INPUT - [0:0]\n\
             -A cali-INPUT -m comment --comment \"cali:abc\" -j DROP\n\
             -I INPUT 2 -m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" -j cali-INPUT\n\
             -A FORWARD -m comment --comment \"cali:S93hcgKJrXEqnTfs\" -m mark --mark 0x10000/0x10000 -j ACCEPT\n\
             COMMIT\n"
        );
    }

    #[test]
    fn nothing_of_ours_reduces_to_nothing() {
        let save = "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j CT --notrack\nCOMMIT\n";
        assert_eq!(reduce_save(save, TableName::Raw), "");
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

    #[test]
    fn snapshot_and_restore_through_the_fake() {
        use crate::dataplane::fake::FakeDataplane;
        use crate::dataplane::Backend;
        let dp = FakeDataplane::new(Backend::Nft);
        dp.external_restore(
            Family::V4,
            TableName::Filter,
            "*filter\n:cali-INPUT - [0:0]\n-A cali-INPUT -m comment --comment \"cali:x1\" -j ACCEPT\n\
             -A INPUT -m comment --comment \"cali:h1\" -j cali-INPUT\nCOMMIT\n",
        );
        let snap = snapshot(&dp).unwrap();
        let filter = snap
            .tables
            .iter()
            .find(|t| t.family == 4 && t.table == "filter")
            .unwrap();
        assert!(
            filter.restore.contains(":cali-INPUT - [0:0]"),
            "{}",
            filter.restore
        );
        // Something else replaces our state; restore brings the old one back.
        crate::sync::flush(&dp, &SyncOptions::default()).unwrap();
        assert!(dp
            .rules(Family::V4, TableName::Filter, "cali-INPUT")
            .is_none());
        restore(&dp, &snap).unwrap();
        assert_eq!(
            dp.rules(Family::V4, TableName::Filter, "cali-INPUT")
                .map(|r| r.len()),
            Some(1)
        );
    }
}
