//! Golden cases for `render` (tests/golden/render/NN-what/): policies -> load -> resolve for the
//! case's node and interfaces -> render both families -> restore text and ipset text, compared
//! with the expected files (regenerate with UPDATE_GOLDEN=1 and review the diff by hand). The
//! kernel test loads every expected file into fresh network namespaces on both iptables
//! backends.

use crate::golden_compare;
use crate::run::must;

use golden_compare::check;
use hostfw::render::render_with_provenance;
use hostfw::resolve::HostInterfaces;
use hostfw::ruleset::ipset::sets_restore;
use hostfw::ruleset::restore::ruleset_restore;
use hostfw::ruleset::{Family, TableName};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const GOLDEN: &str = "tests/golden/render";

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(GOLDEN)
        .expect("golden directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// `interfaces`: one line per interface, `name [address...]`.
fn interfaces(dir: &Path) -> HostInterfaces {
    let mut out = HostInterfaces::new();
    if let Ok(text) = fs::read_to_string(dir.join("interfaces")) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            let name = words.next().expect("interface name").to_string();
            let addrs = words
                .map(|w| w.parse().expect("interface address"))
                .collect();
            out.insert(name, addrs);
        }
    }
    out
}

/// The three outputs of one case: v4 restore text, v6 restore text, ipset restore text.
fn render_case(dir: &Path) -> [String; 3] {
    let node = fs::read_to_string(dir.join("node")).expect("node file");
    let loaded = hostfw::source::load_paths(&[dir.join("policies")]);
    let Some(set) = loaded.set else {
        let diags: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        panic!("{}: invalid policies:\n{}", dir.display(), diags.join("\n"));
    };
    let view = hostfw::resolve::resolve(&set, node.trim(), &interfaces(dir));
    // With provenance: the goldens prove it changes no byte of the restore text.
    let (v4, _) = render_with_provenance(&view, Family::V4).expect("render v4");
    let (v6, _) = render_with_provenance(&view, Family::V6).expect("render v6");
    let sets = sets_restore(v4.ipsets.values().chain(v6.ipsets.values()));
    [ruleset_restore(&v4), ruleset_restore(&v6), sets]
}

const OUTPUTS: [&str; 3] = ["expected-v4.rules", "expected-v6.rules", "expected.ipsets"];

#[test]
fn golden_render_cases() {
    let all = cases();
    assert!(all.len() >= 25, "expected at least 25 golden cases");
    let mut failures = Vec::new();
    for dir in &all {
        let outputs = render_case(dir);
        for (file, actual) in OUTPUTS.iter().zip(outputs.iter()) {
            failures.extend(check(&dir.join(file), actual));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 to regenerate):\n{}",
        failures.join("\n")
    );
}

#[test]
fn render_is_deterministic() {
    for dir in cases() {
        assert_eq!(render_case(&dir), render_case(&dir), "{}", dir.display());
    }
}

/// A network namespace deleted on drop, so a failing assertion does not leak it.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add")
            .success();
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }

    /// Run `argv` inside the namespace with `input` on stdin; Err(stderr) on failure.
    fn run(&self, argv: &[&str], input: &str) -> Result<(), String> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {argv:?}: {e}"))?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn have(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every golden output must load into a real kernel: ipsets with `ipset restore`, then each
/// family's rules with `--test` and for real, on the legacy and the nft backend, each in a fresh
/// namespace.
#[test]
fn golden_outputs_load_into_the_kernel() {
    let is_root = nix::unistd::Uid::effective().is_root();
    let tools = [
        "ipset",
        "iptables-legacy-restore",
        "ip6tables-legacy-restore",
        "iptables-nft-restore",
        "ip6tables-nft-restore",
    ];
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if !is_root || !missing.is_empty() {
        let why = format!("not root ({is_root}) or missing {missing:?}");
        if std::env::var_os("CI").is_some_and(|v| v == "true") {
            panic!("kernel test cannot run under CI: {why}");
        }
        eprintln!("SKIPPED golden_outputs_load_into_the_kernel: {why}");
        return;
    }
    let mut failures = Vec::new();
    for (n, dir) in cases().iter().enumerate() {
        let read = |f: &str| fs::read_to_string(dir.join(f)).expect("golden output");
        let (v4, v6, sets) = (read(OUTPUTS[0]), read(OUTPUTS[1]), read(OUTPUTS[2]));
        for backend in ["legacy", "nft"] {
            let ns = Netns::new(format!("hfw-render-{}-{n}-{backend}", std::process::id()));
            let mut step = |what: &str, argv: &[&str], input: &str| {
                if let Err(e) = ns.run(argv, input) {
                    failures.push(format!("{} [{backend}] {what}: {e}", dir.display()));
                }
            };
            step("ipset restore", &["ipset", "restore"], &sets);
            let v4_bin = format!("iptables-{backend}-restore");
            let v6_bin = format!("ip6tables-{backend}-restore");
            step("v4 --test", &[&v4_bin, "--noflush", "--test"], &v4);
            step("v6 --test", &[&v6_bin, "--noflush", "--test"], &v6);
            step("v4 load", &[&v4_bin, "--noflush"], &v4);
            step("v6 load", &[&v6_bin, "--noflush"], &v6);
        }
    }
    assert!(
        failures.is_empty(),
        "kernel rejected golden output:\n{}",
        failures.join("\n")
    );
}

/// `hostfw render` prints exactly the golden text for each family and for `--ipsets` (the seed
/// case uses named interfaces only, so the host's own interfaces do not matter).
#[test]
fn render_command_prints_the_golden_text() {
    let dir = Path::new(GOLDEN).join("01-seed-k8s-worker");
    let policies = dir.join("policies");
    for (args, file) in [
        (vec![], OUTPUTS[0]),
        (vec!["--family", "4"], OUTPUTS[0]),
        (vec!["--family", "6"], OUTPUTS[1]),
    ] {
        let out = must(
            Command::new(env!("CARGO_BIN_EXE_hostfw"))
                .args(["--policy-dir", policies.to_str().expect("utf-8 path")])
                .args(["--node", "host-a", "render"])
                .args(&args),
        );
        let expected = fs::read_to_string(dir.join(file)).expect("golden");
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{args:?}");
    }
    // --ipsets prints one family's sets; the golden file holds v4 then v6.
    let dir = Path::new(GOLDEN).join("12-gns-selector");
    let out = must(
        Command::new(env!("CARGO_BIN_EXE_hostfw"))
            .args([
                "--policy-dir",
                dir.join("policies").to_str().expect("utf-8 path"),
            ])
            .args(["--node", "host-a", "render", "--ipsets"]),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("create cali40"), "{text}");
    assert!(text.contains("create cali40s:"), "{text}");
    assert!(!text.contains("cali60"), "{text}");
    assert!(fs::read_to_string(dir.join(OUTPUTS[2]))
        .expect("golden")
        .starts_with(&text));
}

/// An invalid policy directory exits 1 without output on stdout.
#[test]
fn render_command_rejects_invalid_input() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::write(
        tmp.path().join("bad.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec: {selector: \"(((\"}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_hostfw"))
        .args(["--policy-dir", tmp.path().to_str().expect("utf-8 path")])
        .args(["--node", "host-a", "render"])
        .output()
        .expect("run hostfw");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

/// The NodeView of a case whose policies are valid.
fn case_view(dir: &Path) -> hostfw::resolve::NodeView {
    let node = fs::read_to_string(dir.join("node")).expect("node file");
    let set = hostfw::source::load_paths(&[dir.join("policies")])
        .set
        .expect("valid policies");
    hostfw::resolve::resolve(&set, node.trim(), &interfaces(dir))
}

/// Provenance is never written: for every golden case the restore text and the `cali:` hashes
/// of a render with provenance are those of a plain render (and the goldens pin both).
#[test]
fn provenance_changes_no_restore_text_or_hash() {
    use hostfw::ruleset::hash::table_hashes;
    let mut traced_rules = 0;
    for dir in cases() {
        let view = case_view(&dir);
        for family in Family::ALL {
            let plain = hostfw::render::render(&view, family).expect("render");
            let (traced, provenance) = render_with_provenance(&view, family).expect("render");
            traced_rules += provenance.entries().count();
            assert_eq!(ruleset_restore(&traced), ruleset_restore(&plain));
            for (a, b) in traced.tables.iter().zip(&plain.tables) {
                assert_eq!(table_hashes(a), table_hashes(b), "{}", dir.display());
            }
        }
    }
    assert!(
        traced_rules > 100,
        "only {traced_rules} rules with an origin"
    );
}

/// Invariants over every golden case and both families: each jump/goto target is a chain of
/// the same table, every chain is reachable (nothing orphaned), every chain name fits in 28
/// characters, every set a rule matches on is in the ruleset's ipsets with the right family,
/// and every rule origin in the provenance names a rule the ruleset has (API-rule origins only
/// in chains a policy or profile owns).
#[test]
fn rendered_tables_are_closed_and_reachable() {
    use hostfw::render::provenance::{Origin, OwnerKind};
    use hostfw::ruleset::{Action, Match};
    use std::collections::BTreeSet;
    for dir in cases() {
        let view = case_view(&dir);
        for family in Family::ALL {
            let (rs, provenance) = render_with_provenance(&view, family).expect("render");
            for (table, chain, index, origin) in provenance.entries() {
                let t = rs.tables.iter().find(|t| t.name == table).expect("table");
                let rules = t.chains.get(chain).map_or(0, |c| c.rules.len());
                assert!(index < rules, "{} {chain}[{index}]", dir.display());
                if let Origin::ApiRule(_) = origin {
                    let owner = provenance.owner(chain).expect("owned chain");
                    assert!(!matches!(owner.kind, OwnerKind::Endpoint { .. }), "{chain}");
                }
            }
            for table in &rs.tables {
                let mut targets: BTreeSet<&str> = BTreeSet::new();
                let rules = table
                    .chains
                    .values()
                    .flat_map(|c| c.rules.iter())
                    .chain(table.hooks.iter().map(|h| &h.rule));
                for rule in rules {
                    if let Action::Jump(t) | Action::Goto(t) = &rule.action {
                        let t = &**t;
                        assert!(
                            table.chains.contains_key(t),
                            "{} {family:?} {:?}: dangling target {t}",
                            dir.display(),
                            table.name
                        );
                        targets.insert(t);
                    }
                    for m in &rule.matches {
                        if let Match::Set { name, .. } = m {
                            let s = rs.ipsets.get(&**name).expect("referenced ipset exists");
                            assert_eq!(s.family, family);
                        }
                    }
                }
                // AssumeNeededOnEveryNode policies' filter chains exist unreferenced.
                let forced: BTreeSet<String> = view
                    .policies
                    .values()
                    .filter(|p| p.assume_needed_on_every_node && table.name == TableName::Filter)
                    .flat_map(|p| ["pi", "po"].map(|d| format!("cali-{d}-gnp/{}", p.meta.name)))
                    .collect();
                for name in table.chains.keys() {
                    assert!(name.len() <= 28, "{name} too long");
                    assert!(
                        targets.contains(name.as_str()) || forced.contains(name),
                        "{name} unreachable"
                    );
                }
            }
        }
    }
}
