//! `scripts/demo.sh` (what `make demo` runs) against the built binary: it succeeds, its daemon
//! really exits on SIGTERM with the rules still in force, and afterwards nothing of it remains —
//! no process, no namespace, no work directory.

use crate::netns::kernel_tests_enabled;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The value after `prefix` on the first output line that has it.
fn after<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("the demo printed no line starting {prefix:?}:\n{out}"))
}

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[test]
fn demo_daemon_exits_on_sigterm_and_nothing_of_the_demo_remains() {
    if !kernel_tests_enabled() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh");
    let out = Command::new(&script)
        .arg(env!("CARGO_BIN_EXE_hostfw"))
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    // The demo's own check, made while the namespace still existed: the daemon's pid is gone,
    // it exited 0, and `hostfw diff` found the kernel still holding every rule.
    let marker = after(&stdout, "daemon pid ");
    let (pid, rest) = marker.split_once(' ').expect("pid and status");
    assert!(
        rest.starts_with("exited with status 0; the kernel still holds every rule"),
        "{marker}"
    );
    let work = PathBuf::from(after(&stdout, "demo: work directory "));
    assert!(work.starts_with("/tmp"), "{}", work.display());

    // Whatever the daemon's pid is now, it is not a hostfw left running.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("hostfw"),
        "the demo's daemon (pid {pid}) is still running"
    );
    let leftovers = processes_mentioning(&work.to_string_lossy());
    assert!(
        leftovers.is_empty(),
        "processes of the demo remain: {leftovers:?}"
    );
    assert!(!work.exists(), "the demo left {}", work.display());
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(
        !netns.contains("hostfw-demo-"),
        "the demo left namespaces:\n{netns}"
    );
}
