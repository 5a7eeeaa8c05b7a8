//! The `rust-version` Cargo.toml claims must be true: at least the highest `rust-version` any
//! locked dependency declares. A toolchain that passes the claim but not a dependency's fails
//! with a confusing error deep in the build, and `make deps` installs by that claim.

use crate::run::must;
use std::process::Command;

/// A dotted version as numbers, so "1.88" < "1.100" and "1.88" == "1.88.0".
fn parse_version(text: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = text
        .split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("not a version: {text:?}"))
        })
        .collect();
    while parts.len() < 3 {
        parts.push(0);
    }
    parts
}

fn host_triple(rustc: &str) -> String {
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host triple")
        .to_string()
}

#[test]
fn rust_version_is_at_least_every_locked_dependency_needs() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // Offline and locked: the lock file as built, nothing resolved anew. The host platform only,
    // because crates for other targets (Windows consoles) are neither built nor downloaded.
    let out = must(
        Command::new(&cargo)
            .args(["metadata", "--format-version", "1", "--locked", "--offline"])
            .args(["--filter-platform", &host_triple(&rustc)])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")),
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages array");
    let claim = packages
        .iter()
        .find(|p| p["name"] == "hostfw")
        .and_then(|p| p["rust_version"].as_str())
        .expect("Cargo.toml declares rust-version");
    let needed = packages
        .iter()
        .filter(|p| p["name"] != "hostfw")
        .filter_map(|p| {
            let version = p["rust_version"].as_str()?;
            let name = p["name"].as_str().unwrap_or("?");
            let at = p["version"].as_str().unwrap_or("?");
            Some((
                parse_version(version),
                format!("{name} {at} (rust-version {version})"),
            ))
        })
        .max()
        .expect("some dependency declares rust-version");
    assert!(
        parse_version(claim) >= needed.0,
        "Cargo.toml claims rust-version {claim}, but {} needs more",
        needed.1
    );
}

#[test]
fn versions_compare_numerically() {
    assert!(parse_version("1.100") > parse_version("1.88"));
    assert_eq!(parse_version("1.88"), parse_version("1.88.0"));
}
