//! Architecture guards: the modules the crate calls pure name no effect (files, processes,
//! network, clock, environment, detached threads or sleeps, terminal, syscalls) in their
//! source (`thread::scope`, which joins its threads before it returns, only spreads a pure
//! computation over cores: render and plan run one family per thread), render never
//! produces iptables text, only `policy::parse` knows the YAML crate, only `ruleset::packed` the
//! compression crate, and only `source::directory` lists directories. A finding names the file and line.

use std::fs;
use std::path::{Path, PathBuf};

/// The pure modules, as paths under `src/` (a file, or a directory scanned recursively), each
/// with what it must not name beyond `EFFECTS`. Adding a module is one line.
const PURE: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("policy/mod.rs", &[]),
    ("policy/parse.rs", &[]),
    ("policy/validate", &[]),
    ("resolve", &[]),
    // Render returns typed rules: only ruleset's writer spells iptables text.
    ("render", &["ruleset::restore", "ruleset::felix", "--jump"]),
    ("ruleset", &[]),
    ("explain/sim.rs", &[]),
    ("daemon/timers.rs", &[]),
    // The spine: the caller reads the host (interfaces, SSH sessions) and passes it in.
    ("desired.rs", &["crate::host", "guard::observe("]),
    ("finding.rs", &[]),
    // The etcd layout, push plan and datastore settings: the client and watch thread do I/O.
    ("source/etcd/layout.rs", &["etcd_client", "tokio"]),
    ("source/etcd/plan.rs", &["etcd_client", "tokio"]),
    ("source/etcd/config.rs", &["etcd_client", "tokio"]),
];

/// Names that mean an effect. Each matches only at the start of a path segment, so `fs::` is
/// caught in `std::fs::read` and in `use std::{fs, ..}; fs::read`, but not inside `xfs::`.
/// Address types (`std::net::IpAddr`) are data and stay allowed; sockets are not.
const EFFECTS: &[&str] = &[
    "fs::",
    "File::",
    "OpenOptions",
    "process::",
    "Command::new",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "UnixStream",
    "UnixListener",
    "UnixDatagram",
    "env::",
    "Instant::now",
    "SystemTime::now",
    "thread::spawn",
    "thread::sleep",
    "stdin()",
    "stdout()",
    "stderr()",
    "print!",
    "println!",
    "eprint!",
    "eprintln!",
    "nix::",
    "libc::",
];

/// Every banned name in `text` as (1-based line, name). Comment lines are skipped (a doc comment
/// may say what the module does not do), and so is an inline unit-test module
/// (`#[cfg(test)]` then `mod NAME {`, up to the `}` that rustfmt puts in column 0): a test may
/// take an `Instant` to feed the pure code.
fn scan(text: &str, banned: &[&str]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        if line == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|(_, next)| next.starts_with("mod ") && next.ends_with('{'))
        {
            for (_, inner) in lines.by_ref() {
                if inner == "}" {
                    break;
                }
            }
            continue;
        }
        if line.trim_start().starts_with("//") {
            continue;
        }
        for name in banned {
            let at_segment_start = line.match_indices(name).any(|(at, _)| {
                !line[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if at_segment_start {
                found.push((i + 1, name.to_string()));
            }
        }
    }
    found
}

fn src(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(rel)
}

/// The Rust files of a file or directory, sorted.
fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
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

#[test]
fn pure_modules_have_no_effects() {
    let mut findings = Vec::new();
    for (module, extra) in PURE {
        let path = src(module);
        let files = rust_files(&path);
        // A renamed or moved module must fail here, not leave the guard checking nothing.
        assert!(!files.is_empty(), "{}: no Rust files", path.display());
        let banned: Vec<&str> = EFFECTS.iter().chain(extra.iter()).copied().collect();
        for file in files {
            let text = fs::read_to_string(&file).expect("read");
            for (line, name) in scan(&text, &banned) {
                findings.push(format!("{}:{line}: {name}", file.display()));
            }
        }
    }
    assert!(
        findings.is_empty(),
        "pure modules name effects:\n{}",
        findings.join("\n")
    );
}

#[test]
fn the_scanner_reports_file_effects_by_line() {
    let snippet = "//! Never calls std::fs.\n\
                   use std::net::IpAddr;\n\
                   fn f() {\n    let _ = std::fs::read(\"x\");\n}\n\
                   fn g() { let t = Instant::now(); println!(\"{t:?}\"); }\n\
                   fn h(xfs::Thing) {}\n";
    assert_eq!(
        scan(snippet, EFFECTS),
        [
            (4, "fs::".to_string()),
            (6, "Instant::now".to_string()),
            (6, "println!".to_string()),
        ]
    );
}

#[test]
fn the_scanner_skips_only_the_unit_test_module() {
    let snippet = "fn f() {}\n\
                   #[cfg(test)]\n\
                   mod tests {\n    fn t() { let _ = Instant::now(); }\n}\n\
                   #[cfg(test)]\n\
                   fn helper() { let _ = Instant::now(); }\n";
    assert_eq!(scan(snippet, EFFECTS), [(7, "Instant::now".to_string())]);
}

#[test]
fn the_scanner_sees_grouped_imports() {
    let snippet = "use std::{fs, io};\nfn f() { fs::write(\"x\", b\"\").ok(); }\n";
    assert_eq!(scan(snippet, EFFECTS), [(2, "fs::".to_string())]);
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
fn only_compress_knows_the_compression_crate() {
    for f in rust_files(&src("")) {
        let text = fs::read_to_string(&f).expect("read");
        assert_eq!(
            text.contains("lz4_flex"),
            f.ends_with("src/compress.rs"),
            "{}: lz4_flex belongs to compress alone",
            f.display()
        );
    }
}

#[test]
fn only_source_reads_the_policy_directory() {
    let mut files = rust_files(&src("policy"));
    files.extend(rust_files(&src("source")));
    files.push(src("desired.rs"));
    for f in files {
        let text = fs::read_to_string(&f).expect("read");
        // The directory source; its watcher's tests list the directory they watch.
        if f.ends_with("source/directory.rs") || f.ends_with("source/watch.rs") {
            continue;
        }
        assert!(
            !text.contains("read_dir"),
            "{} lists directories",
            f.display()
        );
    }
}
