//! The systemd unit: `systemd-analyze verify` accepts it without a single warning, and it says
//! what docs/design.md ("Daemon", "Failure model") requires of it (notify type, reload by SIGHUP
//! through a script that waits for it, ordering, hardening, no restart without CAP_NET_ADMIN
//! and a start limit that holds).

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
    for program in [
        "usr/sbin/hostfw",
        "usr/libexec/hostfw/hostfw-reload",
        "bin/sh",
        "bin/touch",
    ] {
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

/// The one value of `key`, which must appear exactly once.
fn single(text: &str, key: &str) -> String {
    let v = values(text, key);
    assert_eq!(v.len(), 1, "{key}= should appear once, found {v:?}");
    v[0].clone()
}

#[test]
fn unit_has_the_required_settings() {
    let text = unit_text();
    let one = |key: &str| single(&text, key);
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("ExecStart"), "/usr/sbin/hostfw run");
    // Synchronous reload: the script sends SIGHUP and waits for the daemon's status.
    assert_eq!(
        one("ExecReload"),
        "/usr/libexec/hostfw/hostfw-reload $MAINPID"
    );
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

/// Seconds of a systemd time span as this unit writes them ("60s", "2s").
fn seconds(span: &str) -> u64 {
    span.strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a span in seconds: {span:?}"))
}

#[test]
fn unit_does_not_restart_without_net_admin_and_its_start_limit_holds() {
    let text = unit_text();
    let one = |key: &str| single(&text, key);
    let code = hostfw::cmd::Exit::NoPrivilege.code().to_string();
    assert!(
        one("RestartPreventExitStatus")
            .split_whitespace()
            .any(|s| s == code),
        "RestartPreventExitStatus= must list {code} (hostfw run without CAP_NET_ADMIN)"
    );
    // The limit only holds when StartLimitBurst restarts fit in StartLimitIntervalSec; with
    // systemd's defaults (5 in 10 s) and RestartSec=2s they never do.
    let burst: u64 = one("StartLimitBurst").parse().expect("a number");
    let interval = seconds(&one("StartLimitIntervalSec"));
    let delay = seconds(&one("RestartSec"));
    assert!(
        burst * delay < interval,
        "{burst} restarts {delay} s apart do not fit in StartLimitIntervalSec={interval}s"
    );
}
