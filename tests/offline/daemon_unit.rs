//! The systemd unit: `systemd-analyze verify` accepts it without a single warning, and it says
//! what docs/design.md ("Daemon", "Failure model") requires of it (notify type, reload by SIGHUP, ordering, hardening).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const UNIT: &str = "systemd/hostfw.service";

fn unit_text() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(UNIT)).unwrap()
}

/// `systemd-analyze`, or None outside CI when it is missing (install the `systemd` package).
fn analyzer() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("systemd-analyze"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-analyze not found: install the `systemd` package"
        );
        eprintln!("skipped: systemd-analyze not found (install the `systemd` package)");
    }
    found
}

/// A file-system root holding the unit and stand-ins for the programs it runs, so `verify`
/// checks the unit as installed without needing hostfw in /usr/sbin.
fn install_root(unit: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("etc/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::write(units.join("hostfw.service"), unit).unwrap();
    for program in ["usr/sbin/hostfw", "bin/kill", "bin/touch"] {
        let path = root.path().join(program);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    root
}

/// Run `systemd-analyze verify`; Ok when it exits 0 and prints nothing.
fn verify(analyze: &Path, unit: &str) -> Result<(), String> {
    let root = install_root(unit);
    let out = Command::new(analyze)
        .args(["verify", "--man=no", "--generators=no"])
        .arg(format!("--root={}", root.path().display()))
        .arg("hostfw.service")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {text}", out.status))
    }
}

#[test]
fn systemd_analyze_verify_passes_cleanly() {
    let Some(analyze) = analyzer() else { return };
    verify(&analyze, &unit_text()).unwrap();
}

#[test]
fn systemd_analyze_verify_would_catch_a_typo() {
    // Guards the check above: a misspelt key must not pass as "verified".
    let Some(analyze) = analyzer() else { return };
    let broken = unit_text().replace("NoNewPrivileges=yes", "NoNewPrivilegez=yes");
    assert!(verify(&analyze, &broken).is_err());
}

/// Every value of `key` in the unit (keys may repeat).
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn unit_has_the_required_settings() {
    let text = unit_text();
    let one = |key: &str| {
        let v = values(&text, key);
        assert_eq!(v.len(), 1, "{key}= should appear once, found {v:?}");
        v[0].clone()
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("ExecStart"), "/usr/sbin/hostfw run");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("Wants"), "network-pre.target");
    assert!(one("Before").split(' ').any(|u| u == "network-pre.target"));
    assert!(!one("WatchdogSec").is_empty());
    assert_eq!(one("RuntimeDirectory"), "hostfw");
    assert_eq!(one("StateDirectory"), "hostfw");
    assert_eq!(
        values(&text, "EnvironmentFile"),
        vec!["-/etc/default/hostfw", "-/etc/sysconfig/hostfw"]
    );
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_ADMIN CAP_NET_RAW");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ReadWritePaths"), "-/run/xtables.lock");
    assert_eq!(
        one("RestrictAddressFamilies"),
        "AF_UNIX AF_NETLINK AF_INET AF_INET6"
    );
}
