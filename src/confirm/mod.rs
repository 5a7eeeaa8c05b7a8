//! Timed confirmation (`apply --confirm SECS`, `hostfw confirm`): a snapshot of hostfw's own
//! kernel state (our chains, our hook rules at their positions, our ipsets) taken before an
//! apply, the pending-confirmation file the daemon and `status` read, the detached watcher that
//! restores the snapshot when the deadline passes, and the restore itself. Kernel access only
//! through `&dyn Dataplane`; the files live in the run directory.
//!
//! Files in the run directory (documented for the daemon and `status`):
//! - `confirm-pending.json`: present while a confirmation is pending. JSON object
//!   `{"token": str, "created_unix": u64, "deadline_unix": u64, "seconds": u64,
//!   "backend": "legacy"|"nft", "watcher_pid": u32|null, "deadline_boot_ms": u64|null,
//!   "source_revision": str|null}` (the deadline on CLOCK_BOOTTIME when present; the revision
//!   of the policy set the apply enforced). While it exists the daemon must not
//!   reconcile; `PENDING_GRACE_SECS` after the deadline it is `Hold::Abandoned` and the daemon
//!   or the next command performs the rollback (`roll_back`).
//! - `confirm-rolled-back.json`: written after a rollback,
//!   `{"token": str, "rolled_back_unix": u64}`. The kernel then holds the old rules while the
//!   policy directory still holds the unconfirmed ones: the daemon must not reconcile until the
//!   policy directory changes or it is reloaded (SIGHUP), and then removes the file
//!   (`resume_after_edit`).
//! - `confirm-confirmed.json`: `{"source_revision": str, "confirmed_unix": u64}`, written by
//!   `hostfw confirm`: the daemon adopts the set of exactly that revision even where its lockout
//!   guard refuses it (`was_confirmed`).
//! - `confirm-snapshot.json`: the state to restore (private to this module).
//! - `confirm.log`: what the watcher did (it has no terminal).
//!
//! The daemon asks `daemon_hold` before each reconcile; `status` shows `status_line`.
//!
//! Parts: `plan` (the rollback planner, pure), `state` (those files), `flow` (arm, watcher, wait,
//! restore).

mod flow;
mod state;

pub use crate::sync::rollback::{SavedHook, SavedTable, Snapshot};
pub use flow::{arm, restore, roll_back, wait, RollBack, WatchEnd};
// `sync` puts tables back with the same planner when a later table of a pass fails.
pub use state::{
    boottime_ms, clear, daemon_hold, now_unix, pending, read_snapshot, record_confirmed,
    record_rollback, resume_after_edit, status_line, was_confirmed, write_pending, Confirmed, Hold,
    Pending, RolledBack, CONFIRMED_FILE, LOG_FILE, PENDING_FILE, PENDING_GRACE_SECS,
    ROLLED_BACK_FILE, SNAPSHOT_FILE,
};

use crate::dataplane::DataplaneError;
use crate::ruleset::SaveError;
use crate::sync::SyncError;
use std::io;
use std::path::PathBuf;

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

#[cfg(test)]
mod tests {
    use super::flow::snapshot;
    use super::*;
    use crate::sync::rollback::saved_table;

    use crate::dataplane::fake::{Call, FakeDataplane};
    use crate::ruleset::{parse_ipset_save, parse_save, Family, TableName};
    use std::collections::BTreeMap;

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
            watcher_pid: Some(std::process::id()),
            deadline_boot_ms: None,
            source_revision: None,
        };
        write_pending(run, &p).unwrap();
        assert_eq!(daemon_hold(run, 1005), Some(Hold::Pending(p.clone())));
        let line = status_line(run, 1005).unwrap();
        assert!(
            line.contains("rollback in 5 s")
                && line.contains(&format!("pid {}", std::process::id())),
            "{line}"
        );
        // The watcher is gone: status says so.
        let dead = Pending {
            watcher_pid: Some(i32::MAX as u32),
            ..p.clone()
        };
        write_pending(run, &dead).unwrap();
        let line = status_line(run, 1005).unwrap();
        assert!(line.contains("is not running"), "{line}");
        // After the grace period the rollback is owed by whoever comes next; it never lapses.
        assert_eq!(
            daemon_hold(run, 1010 + PENDING_GRACE_SECS),
            Some(Hold::Abandoned(dead.clone()))
        );
        assert!(status_line(run, 1010 + PENDING_GRACE_SECS)
            .unwrap()
            .contains("did not roll back"));
        clear(run).unwrap();
        record_rollback(run, "t1").unwrap();
        assert!(matches!(daemon_hold(run, 2000), Some(Hold::RolledBack(_))));
        resume_after_edit(run).unwrap();
        assert_eq!(daemon_hold(run, 2000), None);
        assert_eq!(status_line(run, 2000), None);
    }

    #[test]
    fn pending_is_abandoned_once_grace_ends() {
        let p = Pending {
            token: "t".into(),
            created_unix: 100,
            deadline_unix: 110,
            seconds: 10,
            backend: "nft".into(),
            watcher_pid: None,
            deadline_boot_ms: None,
            source_revision: None,
        };
        assert!(!p.expired(105) && !p.abandoned(105));
        assert!(p.expired(110) && !p.abandoned(110 + PENDING_GRACE_SECS - 1));
        assert!(p.abandoned(110 + PENDING_GRACE_SECS));
    }

    /// A boot-time deadline ignores the wall clock: a clock stepped a day ahead does not expire
    /// it, one stepped back does not postpone it.
    #[test]
    fn a_boottime_deadline_ignores_wall_clock_steps() {
        let p = Pending {
            token: "t".into(),
            created_unix: 100,
            deadline_unix: 110,
            seconds: 10,
            backend: "nft".into(),
            watcher_pid: None,
            deadline_boot_ms: Some(boottime_ms() + 600_000),
            source_revision: None,
        };
        assert!(!p.expired(110 + 86_400));
        let past = Pending {
            deadline_boot_ms: Some(boottime_ms().saturating_sub(60_000)),
            source_revision: None,
            ..p
        };
        assert!(past.abandoned(0));
    }
}
