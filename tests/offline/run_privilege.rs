//! `hostfw run` without CAP_NET_ADMIN stops at once with exit status 4 (the unit's
//! RestartPreventExitStatus=) and a message naming the capability, before it creates its run
//! directory or touches the kernel. As root the capability is dropped from the bounding set
//! (`setpriv`); a non-root test process lacks it anyway.

use std::process::Command;

#[test]
fn run_without_net_admin_exits_4_before_touching_anything() {
    let work = tempfile::tempdir().expect("tempdir");
    let run_dir = work.path().join("run");
    let root = nix::unistd::Uid::effective().is_root();
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.arg("--bounding-set=-net_admin")
            .arg(env!("CARGO_BIN_EXE_hostfw"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_hostfw"))
    };
    let out = cmd
        .arg("--policy-dir")
        .arg(work.path().join("policies.d"))
        .arg("--run-dir")
        .arg(&run_dir)
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .arg("run")
        .env_remove("RUST_LOG")
        .env_remove("HOSTFW_LOG_LEVEL")
        .output()
        .expect("run hostfw");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("needs CAP_NET_ADMIN"), "{stderr}");
    assert!(!run_dir.exists(), "the run directory was created");
}
