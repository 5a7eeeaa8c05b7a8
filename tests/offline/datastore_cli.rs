//! The datastore options on the built binary, without an etcd: incomplete settings end the
//! command with exit 2 and say what is missing, calicoctl.cfg supplies the settings, and the
//! directory stays the default.

use std::fs;
use std::process::{Command, Output};

/// hostfw with no datastore settings from the machine running the tests.
fn hostfw(args: &[&str], cfg: &std::path::Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostfw"));
    for var in [
        "HOSTFW_POLICY_DIR",
        "HOSTFW_DATASTORE_TYPE",
        "DATASTORE_TYPE",
        "ETCD_ENDPOINTS",
        "ETCD_CA_CERT_FILE",
        "ETCD_CERT_FILE",
        "ETCD_KEY_FILE",
        "ETCD_USERNAME",
        "ETCD_PASSWORD",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOSTFW_CALICOCTL_CONFIG", cfg)
        .args(args)
        .output()
        .expect("run hostfw")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command ended with exit 2 and a message containing `needle`.
fn assert_error_naming(out: &Output, needle: &str, what: &str) {
    assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(out));
    assert!(stderr(out).contains(needle), "{what}: {}", stderr(out));
}

#[test]
fn etcdv3_without_endpoints_is_an_error_naming_the_option() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("absent.cfg");
    for args in [
        &["--datastore-type", "etcdv3", "check"][..],
        &["datastore", "pull", "out"][..],
        &["datastore", "push", "in.yaml"][..],
    ] {
        assert_error_naming(
            &hostfw(args, &cfg),
            "--etcd-endpoints",
            &format!("{args:?}"),
        );
    }
}

#[test]
fn calicoctl_cfg_supplies_the_datastore_and_a_bad_endpoint_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("calicoctl.cfg");
    fs::write(
        &cfg,
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\nspec:\n  \
         datastoreType: etcdv3\n  etcdEndpoints: etcd.example:2379\n",
    )
    .expect("write");
    assert_error_naming(
        &hostfw(&["check"], &cfg),
        "`etcd.example:2379` must be an http:// or https:// URL",
        "check",
    );
}

#[test]
fn the_policy_directory_stays_the_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    fs::create_dir(&policies).expect("mkdir");
    fs::write(
        policies.join("a.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: t\nspec:\n  order: 1\n",
    )
    .expect("write");
    let out = hostfw(
        &["--policy-dir", policies.to_str().unwrap(), "check"],
        &dir.path().join("absent.cfg"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
