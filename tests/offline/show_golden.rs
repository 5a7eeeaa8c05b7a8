//! Golden tests for `hostfw show`: each `tests/golden/show/NN-what/` holds `policies/*.yaml`, a
//! `node` file (the node name), an optional `interfaces` file (one interface per line: its name,
//! then its addresses) and the expected `expected.txt` / `expected.json`. The policies are loaded
//! with the real loader, resolved with the given interfaces (never the host's), and rendered.
//! `UPDATE_GOLDEN=1 cargo test --test show_golden` rewrites the expected files (review them!).

use crate::golden_compare;

use golden_compare::{check, line_diff};
use hostfw::cmd::show::{format_json, format_text};
use hostfw::resolve::{resolve, HostInterfaces};
use std::fs;
use std::path::{Path, PathBuf};

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/show")
}

/// Parse an `interfaces` file: `eth0 198.51.100.10 2001:db8::10`, blank lines and `#` comments
/// ignored.
fn parse_interfaces(text: &str) -> HostInterfaces {
    let mut ifaces = HostInterfaces::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        let addrs = words
            .map(|w| {
                w.parse()
                    .unwrap_or_else(|e| panic!("bad address {w:?}: {e}"))
            })
            .collect();
        ifaces.insert(name.to_string(), addrs);
    }
    ifaces
}

#[test]
fn show_golden_scenarios() {
    let mut dirs: Vec<PathBuf> = fs::read_dir(golden_root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "expected at least 10 show scenarios");
    let mut failures = Vec::new();
    for dir in &dirs {
        let node = fs::read_to_string(dir.join("node"))
            .unwrap_or_else(|e| panic!("{}: node file: {e}", dir.display()));
        let interfaces = fs::read_to_string(dir.join("interfaces"))
            .map(|t| parse_interfaces(&t))
            .unwrap_or_default();
        let loaded = hostfw::source::load_paths(&[dir.join("policies")]);
        let Some(set) = loaded.set else {
            let diags: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
            failures.push(format!(
                "{}: policies do not load:\n{}",
                dir.display(),
                diags.join("\n")
            ));
            continue;
        };
        let view = resolve(&set, node.trim(), &interfaces);
        let json = format_json(&view) + "\n";
        failures.extend(check(&dir.join("expected.txt"), &format_text(&view)));
        failures.extend(check(&dir.join("expected.json"), &json));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn interfaces_file_format() {
    let ifaces = parse_interfaces("# host\neth0 198.51.100.10 2001:db8::10\n\nlo\n");
    assert_eq!(ifaces.len(), 2);
    assert_eq!(ifaces["eth0"].len(), 2);
    assert!(ifaces["lo"].is_empty());
}

#[test]
fn line_diff_marks_changed_lines() {
    let d = line_diff("a\nb\nc\n", "a\nx\nc\n");
    assert!(
        d.contains("-b\n") && d.contains("+x\n") && d.contains(" a\n"),
        "{d}"
    );
}
