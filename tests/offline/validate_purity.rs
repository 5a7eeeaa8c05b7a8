//! Architecture guard for the policy loader: parse and validate are pure (no files, processes,
//! clock or environment), only the directory source lists directories, and only `parse` knows
//! the YAML crate.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read_dir") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn src(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(rel)
}

#[test]
fn parse_and_validate_have_no_effects() {
    let mut files = vec![src("policy/parse.rs"), src("policy/mod.rs")];
    files.extend(rust_files(&src("policy/validate")));
    for f in files {
        let text = fs::read_to_string(&f).expect("read");
        for banned in [
            "std::fs",
            "std::process",
            "std::env",
            "Instant::now",
            "SystemTime",
        ] {
            assert!(!text.contains(banned), "{} uses {banned}", f.display());
        }
    }
}

#[test]
fn only_parse_knows_the_yaml_crate() {
    for f in rust_files(&src("")) {
        let text = fs::read_to_string(&f).expect("read");
        if f.ends_with("policy/parse.rs") {
            assert!(text.contains("saphyr_parser"));
            continue;
        }
        assert!(
            !text.contains("saphyr_parser"),
            "{} uses the YAML crate",
            f.display()
        );
    }
}

#[test]
fn only_source_reads_the_policy_directory() {
    let mut files = rust_files(&src("policy"));
    files.extend([src("source/mod.rs"), src("desired.rs")]);
    for f in files {
        let text = fs::read_to_string(&f).expect("read");
        assert!(
            !text.contains("read_dir"),
            "{} lists directories",
            f.display()
        );
    }
}
