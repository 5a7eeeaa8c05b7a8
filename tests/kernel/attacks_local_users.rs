//! Attacks by local users on hostfw's run and state files (docs/design.md, "Local users"): an
//! unprivileged user (uid 65534, through `setpriv`) taking the lock with `flock`, a run
//! directory owned by another user holding a symlinked lock file, and files readable by others;
//! and what such a user is told by `hostfw status`. Root only (the kernel gate), because
//! switching users needs it.

use crate::netns;

use netns::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

const NOBODY: &str = "65534";

fn policies() -> String {
    format!(
        "{}{}",
        allow_ports_policy("web", "8080"),
        scenario_hep("host-eth0", Some("eth0"), "{role: web}")
    )
}

/// Run `argv` as uid/gid 65534 with no supplementary groups, to completion.
fn as_nobody(argv: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .args(argv)
        .output()
        .unwrap_or_else(|e| panic!("setpriv: {e}"))
}

/// A `#[test]` running `$scenario` when the kernel tests are enabled (they run as root).
macro_rules! as_root {
    ($test:ident, $scenario:ident) => {
        #[test]
        fn $test() {
            if kernel_tests_enabled() {
                $scenario();
            }
        }
    };
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A scenario whose work directory is traversable like /run (so only hostfw's own modes stand
/// in another user's way), after one `hostfw apply` made the run directory.
fn applied_in_traversable_dir(tag: &str) -> Scenario {
    let s = Scenario::new(tag, "legacy", &policies());
    std::fs::set_permissions(s.work.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let run = s.run(&["apply"]);
    assert_eq!(run.code, 0, "{run:?}");
    s
}

/// Attack: the lock file was 0644 in a 0755 directory, so any user could `flock` it and freeze
/// the daemon and every command. Now the directory is 0700 and the file 0600.
fn another_user_cannot_take_the_lock_scenario() {
    let s = applied_in_traversable_dir("lockfreeze");
    let lock = s.work.dir.path().join("run/hostfw.lock");
    assert!(lock.exists(), "no lock file at {}", lock.display());
    assert!(
        !as_nobody(&["flock", "--nonblock", &lock.display().to_string(), "true"])
            .status
            .success(),
        "uid 65534 could take the lock"
    );
    assert_eq!(mode(&lock), 0o600);
    assert_eq!(mode(&s.work.dir.path().join("run")), 0o700);
}

as_root!(
    another_user_cannot_take_the_lock,
    another_user_cannot_take_the_lock_scenario
);

/// Attack: a run directory owned by another user with `hostfw.lock` symlinked to a file of
/// root's: root followed the link and truncated its target. Now such a directory is refused
/// and the target is untouched.
fn a_run_dir_of_another_user_is_refused_scenario() {
    let s = Scenario::new("foreignrun", "legacy", &policies());
    let run_dir = s.work.dir.path().join("run");
    std::fs::create_dir(&run_dir).expect("mkdir");
    let victim = s.work.dir.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("victim");
    std::os::unix::fs::symlink(&victim, run_dir.join("hostfw.lock")).expect("symlink");
    nix::unistd::chown(
        &run_dir,
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .expect("chown");
    let run = s.run(&["apply"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("owned by uid 65534"), "{run:?}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
    assert_eq!(
        std::fs::symlink_metadata(&run_dir).expect("run dir").uid(),
        65534
    );
}

as_root!(
    a_run_dir_of_another_user_is_refused,
    a_run_dir_of_another_user_is_refused_scenario
);

/// Attack: the confirmation snapshot and pending files were world-readable. Every file hostfw
/// leaves in its run directory is now 0600, every directory 0700.
fn run_dir_files_are_private_scenario() {
    let s = Scenario::new("private", "legacy", &policies());
    let run = s.run(&["apply", "--confirm", "600"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run_dir = s.work.dir.path().join("run");
    let mut seen = 0;
    for entry in std::fs::read_dir(&run_dir).expect("run dir") {
        let path = entry.expect("entry").path();
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 3, "expected the lock and the confirmation files");
    let confirmed = s.run(&["confirm"]);
    assert_eq!(confirmed.code, 0, "{confirmed:?}");
}

as_root!(
    run_dir_files_are_private,
    run_dir_files_are_private_scenario
);

/// `status.json` is root's (0600 in a 0700 run directory): another user running `hostfw status`
/// is told which file it cannot read and to use sudo, not handed a bare EACCES.
fn status_tells_another_user_to_use_sudo_scenario() {
    let s = applied_in_traversable_dir("statususer");
    let run_dir = s.work.dir.path().join("run");
    let status = run_dir.join("status.json");
    std::fs::write(&status, "{}\n").expect("status.json");
    std::fs::set_permissions(&status, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = as_nobody(&[
        env!("CARGO_BIN_EXE_hostfw"),
        "--run-dir",
        &run_dir.display().to_string(),
        "--state-dir",
        &s.work.dir.path().join("state").display().to_string(),
        "--policy-dir",
        &s.work.policy_dir().display().to_string(),
        "status",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read {}", status.display()))
            && stderr.contains("permission denied")
            && stderr.contains("sudo hostfw status"),
        "{stderr}"
    );
}
as_root!(
    status_tells_another_user_to_use_sudo,
    status_tells_another_user_to_use_sudo_scenario
);

/// The unit gives hostfw private run and state directories and a private umask.
#[test]
fn the_unit_keeps_hostfw_files_private() {
    let unit = include_str!("../../systemd/hostfw.service");
    for line in [
        "UMask=0077",
        "RuntimeDirectoryMode=0700",
        "StateDirectoryMode=0700",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
}
