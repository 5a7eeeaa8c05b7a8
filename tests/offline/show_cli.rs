//! `hostfw show` on the built binary: exit codes, stdout shapes, stderr for invalid input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/show")
        .join(name)
        .join("policies")
}

fn show(dir: &Path, node: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hostfw"))
        .arg("--policy-dir")
        .arg(dir)
        .args(["--node", node, "show"])
        .args(extra)
        .env_remove("HOSTFW_POLICY_DIR")
        .env_remove("HOSTFW_NODENAME")
        .output()
        .expect("run hostfw")
}

#[test]
fn json_output_has_design_shape() {
    // eth0 is named, so it is active whatever interfaces this machine has.
    let out = show(
        &golden("01-seed-k8s-worker"),
        "my-host",
        &["--output", "json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["node"], "my-host");
    let ep = &v["endpoints"][0];
    assert_eq!(ep["name"], "my-host-eth0");
    assert_eq!(ep["interface"], "eth0");
    assert_eq!(ep["expectedIPs"][0], "198.51.100.1");
    assert_eq!(ep["policies"]["ingress"][0], "k8s-worker");
    for class in [
        "egress",
        "forwardIngress",
        "forwardEgress",
        "preDNATIngress",
        "untrackedIngress",
        "untrackedEgress",
    ] {
        assert!(ep["policies"][class].is_array(), "{class}");
    }
    assert_eq!(v["failsafe"]["inbound"][0], "tcp:22");
    assert_eq!(v["failsafe"]["outbound"][0], "udp:53");
    assert!(v["warnings"].is_array());
}

#[test]
fn text_output_lists_endpoint_and_warnings() {
    let out = show(&golden("09-failsafe-empty"), "n1", &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("endpoint eth0 (HostEndpoint n1-eth0)"),
        "{text}"
    );
    assert!(text.contains("SSH to this host will be blocked"), "{text}");
}

#[test]
fn invalid_policy_exits_1_with_diagnostics_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: h\nspec:\n  interfaceName: eth0\n",
    )
    .unwrap();
    let out = show(dir.path(), "n1", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("bad.yaml") && stderr.contains("error"),
        "{stderr}"
    );
}

#[test]
fn missing_policy_directory_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = show(&dir.path().join("does-not-exist"), "n1", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("does-not-exist"), "{stderr}");
}
