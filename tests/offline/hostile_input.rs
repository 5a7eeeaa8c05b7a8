//! Hostile input through `hostfw check` on the built binary: YAML aliases that would expand a
//! small file into gigabytes, and resource names that carry terminal control sequences. Each
//! must end in a bounded, one-line-per-problem report.

use std::fs;
use std::process::{Command, Output};

fn check(files: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        fs::write(dir.path().join(name), text).expect("write");
    }
    Command::new(env!("CARGO_BIN_EXE_hostfw"))
        .env_remove("HOSTFW_POLICY_DIR")
        .args(["check", dir.path().to_str().expect("utf-8 temp path")])
        .output()
        .expect("run hostfw")
}

#[test]
fn alias_of_a_large_scalar_is_bounded_by_bytes_not_only_nodes() {
    // 64 KiB anchored once, referenced 2,000 times: 2,001 nodes (far under the node bound) but
    // 128 MiB of text once expanded.
    let big = "x".repeat(64 << 10);
    let refs = vec!["*big"; 2_000].join(", ");
    let text = format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: s\n  \
         annotations: {{a: &big \"{big}\"}}\nspec:\n  nets: [{refs}]\n"
    );
    let out = check(&[("bomb.yaml", &text)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("MiB of text"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn control_characters_in_names_are_escaped() {
    let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  \
                name: \"evil\\e[2J\\nnext\"\nspec:\n  selector: all()\n";
    let out = check(&[("10-evil.yaml", text)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !err.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters in: {err:?}"
    );
    assert!(err.contains("evil\\u{1b}[2J\\nnext"), "{err:?}");
    assert!(
        err.lines().all(|l| l.contains("10-evil.yaml")),
        "a diagnostic broke across lines: {err:?}"
    );
}
