//! Running commands from the offline tests: the output of one that must succeed.

use std::process::{Command, Output};

/// Run `cmd`, panicking with the command and its stderr when it cannot run or fails.
pub fn must(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
