//! Helpers shared by the stage benchmarks (included with `mod common;`): process measurements,
//! the generated policy set's size, scale and policy heads, and the checks on what it loads to.

use hostfw::model::PolicySet;
use hostfw::policy::Loaded;
use std::fmt::Write;

/// GlobalNetworkPolicies in a full-scale generated set, and the rules each carries.
pub const POLICIES: usize = 10_000;
pub const RULES_PER_POLICY: usize = 10;

/// 1 under `cargo bench` (which passes `--bench`); 100 under `cargo test --all-targets`, where
/// the benchmark is a smoke test at 1/100 scale.
pub fn scale() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        1
    } else {
        100
    }
}

/// Peak resident set size of this process (VmHWM) in MB; None when /proc is unreadable.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The selector of generated policy `i`, cycling through `shapes` kinds: equality, set
/// membership, negation, then (with four) `all()`.
fn selector(i: usize, shapes: usize) -> String {
    match i % shapes {
        0 => format!("role == 'r{}'", i % 25),
        1 => format!("zone in {{'z{}', 'z{}'}} && has(role)", i % 7, (i + 1) % 7),
        2 => format!("!has(quarantine) && env != 'e{}'", i % 3),
        _ => "all()".to_string(),
    }
}

/// The set the generated sources load to and its rule count; a set that does not load is a bug
/// in the generator, shown by its first diagnostics.
pub fn loaded_set(loaded: Loaded) -> (PolicySet, usize) {
    let Some(set) = loaded.set else {
        for d in loaded.diagnostics.iter().take(5) {
            eprintln!("{d}");
        }
        panic!("generated policy set does not load");
    };
    let rules = set
        .policies
        .iter()
        .map(|p| p.ingress.len() + p.egress.len())
        .sum();
    (set, rules)
}

/// The head of generated policy `i` up to its ingress rules: name, `metadata` lines (`labels`,
/// empty for none), order and a selector of one of `shapes` kinds.
pub fn policy_head(i: usize, labels: &str, shapes: usize, out: &mut String) {
    let _ = write!(
        out,
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  \
         name: p{i:05}\n{labels}spec:\n  order: {}\n  selector: \"{}\"\n  ingress:\n",
        i % 1000,
        selector(i, shapes)
    );
}
