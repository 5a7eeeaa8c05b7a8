//! `hostfw check` on the built binary: exit codes (0 valid, 1 invalid, 2 unreadable path),
//! the one-line-per-diagnostic stderr format and the JSON report shape docs/design.md gives
//! ("Product contract").

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

const GOOD: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: allow-ssh\nspec:\n  selector: has(ssh)\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [22]\n";
const WARN: &str = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  ipipEnabled: true\n";
const BAD: &str = "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: web-eth0\nspec:\n  node: web\n  interfaceName: wibblywobblyeth0\n  expectedIPs: [198.51.100.0/24]\n";

fn hostfw(args: &[&str], policy_dir: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostfw"));
    cmd.env_remove("HOSTFW_POLICY_DIR").args(args);
    if let Some(dir) = policy_dir {
        cmd.env("HOSTFW_POLICY_DIR", dir);
    }
    cmd.output().expect("run hostfw")
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn valid_directory_exits_zero_silently() {
    let dir = dir_with(&[("10-good.yaml", GOOD)]);
    let out = hostfw(&["check", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert!(out.stdout.is_empty());
}

#[test]
fn warnings_alone_still_exit_zero() {
    let dir = dir_with(&[("felix.yaml", WARN)]);
    let out = hostfw(&["check", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0));
    let file = dir.path().join("felix.yaml");
    assert_eq!(
        stderr(&out),
        format!(
            "{}:6:3: warning: FelixConfiguration/default: spec.ipipEnabled: `ipipEnabled` is a \
             Calico setting with no meaning for hostfw; ignored\n",
            file.display()
        )
    );
}

#[test]
fn invalid_input_exits_one_with_every_error_on_its_own_line() {
    let dir = dir_with(&[("a-good.yaml", GOOD), ("b-bad.yaml", BAD)]);
    let out = hostfw(&["check", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let file = dir.path().join("b-bad.yaml").display().to_string();
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!(
                "{file}:7:18: error: HostEndpoint/web-eth0: spec.interfaceName: interfaceName \
                 `wibblywobblyeth0` is invalid: `*` or 1-15 characters of letters, digits, `_`, \
                 `.` and `-`"
            ),
            format!(
                "{file}:8:17: error: HostEndpoint/web-eth0: spec.expectedIPs[0]: \
                 `198.51.100.0/24` is not an IP address (expectedIPs are single addresses, not CIDRs)"
            ),
        ]
    );
}

#[test]
fn missing_path_exits_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("policies.d");
    let out = hostfw(&["check", missing.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("{}: error: does not exist\n", missing.display())
    );
}

#[test]
fn policy_dir_comes_from_the_environment_or_flag() {
    let bad = dir_with(&[("bad.yaml", BAD)]);
    let good = dir_with(&[("good.yaml", GOOD)]);
    assert_eq!(hostfw(&["check"], Some(bad.path())).status.code(), Some(1));
    assert_eq!(hostfw(&["check"], Some(good.path())).status.code(), Some(0));
    let flag = hostfw(
        &["-d", good.path().to_str().unwrap(), "check"],
        Some(bad.path()),
    );
    assert_eq!(flag.status.code(), Some(0));
}

#[test]
fn several_paths_are_checked_together() {
    let a = dir_with(&[("p.yaml", GOOD)]);
    let b = dir_with(&[("p.yaml", GOOD)]);
    let out = hostfw(
        &[
            "check",
            a.path().to_str().unwrap(),
            b.path().to_str().unwrap(),
        ],
        None,
    );
    // The same policy name in two places is a duplicate.
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("duplicate GlobalNetworkPolicy `allow-ssh`: also defined at"));
}

#[test]
fn json_report_shape() {
    let dir = dir_with(&[("b-bad.yaml", BAD), ("felix.yaml", WARN)]);
    let out = hostfw(
        &["check", "--output", "json", dir.path().to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(v["valid"], serde_json::Value::Bool(false));
    let diags = v["diagnostics"].as_array().expect("array");
    assert_eq!(diags.len(), 3);
    let first = &diags[0];
    let mut keys: Vec<&str> = first
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec!["column", "field", "file", "kind", "line", "message", "name", "severity"]
    );
    assert_eq!(first["severity"], "error");
    assert_eq!(first["line"], 7);
    assert_eq!(first["column"], 18);
    assert_eq!(first["kind"], "HostEndpoint");
    assert_eq!(first["name"], "web-eth0");
    assert_eq!(first["field"], "spec.interfaceName");
    assert_eq!(diags[2]["severity"], "warning");

    let good = dir_with(&[("good.yaml", GOOD)]);
    let out = hostfw(
        &["check", "--output", "json", good.path().to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v, serde_json::json!({"valid": true, "diagnostics": []}));
}

#[test]
fn file_level_errors_have_no_kind() {
    let dir = dir_with(&[("broken.yaml", "kind: [unclosed\n")]);
    let out = hostfw(
        &["check", "--output", "json", dir.path().to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let d = &v["diagnostics"][0];
    assert_eq!(d["kind"], serde_json::Value::Null);
    assert_eq!(d["field"], serde_json::Value::Null);
    assert!(d["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("YAML syntax error"));
    assert!(d["line"].as_u64().unwrap_or(0) >= 1);
}
