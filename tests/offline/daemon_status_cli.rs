//! `hostfw status` on the built binary: exit codes and messages for a missing status file, a
//! stale one (its writer is gone), and a live one (0 when ok, 1 when degraded); text and JSON
//! output.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

/// A status file; `backend` null keeps `hostfw status` from reading this host's kernel counters.
fn status_json(pid: u32) -> String {
    status_json_in(pid, "degraded")
}

fn status_json_in(pid: u32, state: &str) -> String {
    format!(
        r#"{{
  "state": "{state}",
  "node": "host-a",
  "backend": null,
  "pid": {pid},
  "started": "2026-01-01T00:00:00.000Z",
  "updated": "2026-01-01T00:05:00.000Z",
  "policy": {{ "generation": 4, "source_hash": "ab12", "origin": "directory" }},
  "policies": ["allow-ssh"],
  "last_apply": {{ "time": "2026-01-01T00:04:00.000Z", "duration_ms": 12, "chains_written": 3, "ok": true }},
  "diagnostics": [{{ "file": "/etc/hostfw/policies.d/a.yaml", "line": 4, "column": 3,
    "severity": "error", "kind": "GlobalNetworkPolicy", "name": "p", "field": "spec.ingress[0].action",
    "message": "unknown action" }}],
  "drift_repairs": 1,
  "last_repair": "2026-01-01T00:03:00.000Z",
  "last_error": null
}}"#
    )
}

fn status_cmd(run_dir: &Path, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostfw"));
    cmd.arg("--run-dir").arg(run_dir).arg("status");
    if json {
        cmd.args(["--output", "json"]);
    }
    cmd.env_remove("HOSTFW_RUN_DIR").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn missing_status_exits_2_and_says_the_daemon_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let out = status_cmd(dir.path(), false);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no status at"), "{err}");
    assert!(err.contains("not running"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn stale_status_is_printed_but_exits_2() {
    // A child that has exited and been reaped: its pid is not a live process.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("status.json"), status_json(pid)).unwrap();
    let out = status_cmd(dir.path(), false);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("stale"), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("state:         degraded (daemon not running)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  /etc/hostfw/policies.d/a.yaml:4:3: error: GlobalNetworkPolicy/p: spec.ingress[0].action: unknown action"),
        "{stdout}"
    );
}

/// `hostfw status` against a status file in `state` written by a live process whose name starts
/// with "hostfw", as the daemon's does.
fn live_status(state: &str, json: bool) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("hostfw-sleeper");
    // A symlink, not a copy: the kernel names the process after the path it was started by,
    // and writing a fresh executable races with other tests' forks (ETXTBSY).
    std::os::unix::fs::symlink("/bin/sleep", &fake).unwrap();
    let mut sleeper = Command::new(&fake).arg("30").spawn().unwrap();
    fs::write(
        dir.path().join("status.json"),
        status_json_in(sleeper.id(), state),
    )
    .unwrap();
    let out = status_cmd(dir.path(), json);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    out
}

#[test]
fn live_ok_status_exits_0() {
    let out = live_status("ok", false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn live_degraded_status_exits_1_with_json() {
    let out = live_status("degraded", true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("degraded"),
        "{}",
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["running"], true);
    assert_eq!(v["state"], "degraded");
    assert_eq!(v["policy"]["generation"], 4);
    assert_eq!(v["diagnostics"][0]["line"], 4);
    assert_eq!(v["counters"], serde_json::Value::Null);
    assert!(v["counters_unavailable"].is_string());
}

#[test]
fn corrupt_status_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("status.json"), "{ not json").unwrap();
    let out = status_cmd(dir.path(), false);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not a hostfw status file"),
        "{}",
        text(&out.stderr)
    );
}
