//! Architecture guard for render and the desired-state spine around it: both are pure (no
//! files, processes, clock or environment), and render never produces iptables text (only
//! `ruleset`'s writer does).

use std::fs;
use std::path::Path;

#[test]
fn render_has_no_effects_and_writes_no_text() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/render");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("read");
        for forbidden in [
            "std::fs",
            "std::process",
            "std::env",
            "Instant::now",
            "SystemTime",
            "std::thread",
            "ruleset::restore",
            "ruleset::felix",
            "--jump",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 8,
        "expected the render module files, found {checked}"
    );
}

/// `desired` (and the `finding` type it returns) is pure: the caller reads the host (its
/// interfaces, the SSH sessions the guard protects) and passes them in.
#[test]
fn desired_has_no_effects() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in ["desired.rs", "finding.rs"] {
        let path = src.join(file);
        let text = fs::read_to_string(&path).expect("read");
        for forbidden in [
            "std::fs",
            "std::process",
            "std::env",
            "Instant::now",
            "SystemTime",
            "std::thread",
            "crate::host",
            "observe_sessions",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                path.display()
            );
        }
    }
}
