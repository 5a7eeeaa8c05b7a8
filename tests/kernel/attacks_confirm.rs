//! Attacks on `apply --confirm` (docs/explain-and-confirm.md): the watcher killed before its
//! deadline (kill -9; logind's `KillUserProcesses` does the same with the SSH session), and
//! `flush` while a confirmation is pending.

use crate::netns;

use netns::*;
use std::time::{Duration, Instant};

fn web(port: &str) -> String {
    format!(
        "{}{}",
        allow_ports_policy("web", port),
        scenario_hep("host-eth0", Some("eth0"), "{role: web}")
    )
}

fn ours(s: &Scenario) -> String {
    let mut all = String::new();
    for v6 in [false, true] {
        for table in ["raw", "mangle", "filter"] {
            for line in save(&s.pair.host, s.backend, v6, table, false).lines() {
                if line.contains("cali") {
                    all.push_str(line);
                    all.push('\n');
                }
            }
        }
    }
    all
}

fn pending(s: &Scenario) -> Option<serde_json::Value> {
    let path = s.work.dir.path().join("run/confirm-pending.json");
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn watcher_pid(s: &Scenario) -> i32 {
    pending(s)
        .and_then(|p| p["watcher_pid"].as_i64())
        .expect("a pending confirmation with a watcher") as i32
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Wait (bounded) until `pid` has exited; false if it is still there after `limit`.
fn gone_within(pid: i32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while alive(pid) {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Attack: the watcher is killed; its deadline passes. The next hostfw command performs the
/// overdue rollback (the daemon does the same), so the unconfirmed rules do not stay forever.
fn a_dead_watcher_still_rolls_back_scenario() {
    let s = Scenario::new("deadwatch", "legacy", &web("8080"));
    assert_eq!(s.run(&["apply"]).code, 0);
    let confirmed = ours(&s);
    s.work.write_policies(&web("9090"));
    let run = s.run(&["apply", "--confirm", "1"]);
    assert_eq!(run.code, 0, "{run:?}");
    let pid = watcher_pid(&s);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the watcher");
    assert!(
        gone_within(pid, Duration::from_secs(10)),
        "watcher survived SIGKILL"
    );
    assert_ne!(ours(&s), confirmed, "the unconfirmed rules are in force");
    // Past the deadline and the grace period the rollback is owed.
    let owed = Instant::now() + Duration::from_secs(1 + 5 + 1);
    while Instant::now() < owed {
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = s.run(&["diff"]);
    assert!(run.stderr.contains("rolling back now"), "{run:?}");
    assert_eq!(ours(&s), confirmed, "the overdue rollback did not happen");
    assert!(
        pending(&s).is_none(),
        "the pending file outlived its rollback"
    );
}

#[test]
fn a_dead_watcher_still_rolls_back() {
    if kernel_tests_enabled() {
        a_dead_watcher_still_rolls_back_scenario();
    }
}

/// Attack: `flush` while a confirmation is pending; the watcher used to restore the snapshot's
/// rules later. Flush now cancels the confirmation and says so; the host stays flushed.
fn flush_cancels_a_pending_confirm_scenario() {
    let s = Scenario::new("flushconf", "legacy", &web("8080"));
    assert_eq!(s.run(&["apply"]).code, 0);
    s.work.write_policies(&web("9090"));
    assert_eq!(s.run(&["apply", "--confirm", "2"]).code, 0);
    let pid = watcher_pid(&s);
    let run = s.run(&["flush"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("cancelled the pending apply --confirm"),
        "{run:?}"
    );
    assert!(
        gone_within(pid, Duration::from_secs(15)),
        "the watcher did not end"
    );
    assert_eq!(ours(&s), "", "rules came back after flush");
}

#[test]
fn flush_cancels_a_pending_confirm() {
    if kernel_tests_enabled() {
        flush_cancels_a_pending_confirm_scenario();
    }
}
