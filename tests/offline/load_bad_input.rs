//! Bad input for the loader: every case gets a diagnostic naming the file, never a panic, never
//! unbounded work (docs/policy-format.md, "Limits"). Also the file-selection rules
//! (docs/policy-format.md, "Which files are read").

use hostfw::policy::load_sources;
use hostfw::source::directory::{self, MAX_FILE_BYTES};
use hostfw::source::load_checked;
use hostfw::source::NamedText;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

const PROFILE: &str = "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: NAME}\n";

fn profile(name: &str) -> String {
    PROFILE.replace("NAME", name)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).expect("write");
    p
}

/// Load `paths`; return (valid, unreadable, diagnostics as text).
fn check(paths: &[PathBuf]) -> (bool, bool, Vec<String>) {
    let c = load_checked(paths);
    (
        c.loaded.set.is_some(),
        c.unreadable,
        c.loaded.diagnostics.iter().map(|d| d.to_string()).collect(),
    )
}

/// Load the directory `dir`, which must be readable yet refused; return its diagnostics.
fn refused(dir: &Path) -> Vec<String> {
    let (valid, unreadable, diags) = check(&[dir.to_path_buf()]);
    assert!(!valid && !unreadable, "{diags:?}");
    diags
}

fn has(diags: &[String], file: &Path, fragment: &str) -> bool {
    let file = file.display().to_string();
    diags
        .iter()
        .any(|d| d.starts_with(&file) && d.contains(fragment))
}

/// A set without resources is refused (it would remove all protection), pointing at `flush`.
#[test]
fn empty_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let diags = refused(dir.path());
    assert_eq!(diags.len(), 1);
    assert!(diags[0].contains("hostfw flush"), "{diags:?}");
}

#[test]
fn missing_directory_is_unreadable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let (valid, unreadable, diags) = check(std::slice::from_ref(&missing));
    assert!(!valid && unreadable);
    assert!(has(&diags, &missing, "does not exist"), "{diags:?}");
}

#[test]
fn file_selection_and_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for (name, p) in [
        ("b.yaml", "b"),
        ("a.YML", "a"),
        ("c.Json", "c"),
        ("10-z.yaml", "z"),
    ] {
        write(d, name, &profile(p));
    }
    // Ignored: dotfiles, editor and package leftovers, other extensions, plain subdirectories.
    for name in [
        ".hidden.yaml",
        "b.yaml~",
        ".b.yaml.swp",
        "b.yaml.swp",
        "b.yaml.dpkg-old",
        "b.yaml.dpkg-dist",
        "b.yaml.rpmnew",
        "b.yaml.rpmsave",
        "#b.yaml#",
        "notes.txt",
        "README",
    ] {
        write(d, name, "this: [is not: valid");
    }
    fs::create_dir(d.join("sub")).expect("mkdir");
    write(&d.join("sub"), "deep.yaml", "not: [read");
    let read = directory::read(&[d.to_path_buf()]);
    assert!(read.diagnostics.is_empty(), "{:?}", read.diagnostics);
    let names: Vec<String> = read
        .texts
        .iter()
        .map(|s| {
            Path::new(&s.name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    // Byte order of names: digits, then upper case, then lower case.
    assert_eq!(names, vec!["10-z.yaml", "a.YML", "b.yaml", "c.Json"]);
}

#[test]
fn explicit_file_is_read_whatever_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "policy.txt", &profile("a"));
    let (valid, _, diags) = check(&[f]);
    assert!(valid, "{diags:?}");
}

#[test]
fn empty_and_comment_only_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = write(dir.path(), "empty.yaml", "");
    let comments = write(dir.path(), "comments.yaml", "# nothing here\n\n# at all\n");
    let diags = refused(dir.path());
    assert!(has(&diags, &empty, "no resources"), "{diags:?}");
    assert!(has(&diags, &comments, "no resources"), "{diags:?}");
}

#[test]
fn binary_junk_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.yaml");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&junk, &bytes).expect("write");
    let nul = dir.path().join("nul.yaml");
    fs::write(&nul, b"kind: Profile\n\0\0\0").expect("write");
    let (valid, _, diags) = check(&[dir.path().to_path_buf()]);
    assert!(!valid);
    assert!(has(&diags, &junk, "not valid UTF-8"), "{diags:?}");
    assert!(has(&diags, &nul, "NUL byte"), "{diags:?}");
    // The NUL is located: line 2, column 1.
    assert!(
        diags.iter().any(|d| d.contains("nul.yaml:2:1:")),
        "{diags:?}"
    );
}

#[test]
fn fifty_megabyte_file_is_refused_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.yaml");
    // A sparse file: the size check must come from metadata, before any read.
    let f = fs::File::create(&big).expect("create");
    f.set_len(50 * 1024 * 1024).expect("set_len");
    let (valid, _, diags) = check(&[dir.path().to_path_buf()]);
    assert!(!valid);
    assert!(
        has(&diags, &big, "larger than the 10 MiB limit"),
        "{diags:?}"
    );
    // Exactly at the limit is still read (and then judged as YAML).
    let edge = dir.path().join("edge.yaml");
    let mut text = profile("edge");
    text.push_str(&"#".repeat(MAX_FILE_BYTES as usize - text.len()));
    fs::write(&edge, text).expect("write");
    let (_, _, diags) = check(std::slice::from_ref(&edge));
    assert!(!has(&diags, &edge, "limit"), "{diags:?}");
}

#[test]
fn symlink_loop_and_dangling_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    symlink(d.join("b.yaml"), d.join("a.yaml")).expect("symlink");
    symlink(d.join("a.yaml"), d.join("b.yaml")).expect("symlink");
    symlink(d.join("missing-target"), d.join("c.yaml")).expect("symlink");
    let diags = refused(d);
    assert!(has(&diags, &d.join("a.yaml"), "symlink loop"), "{diags:?}");
    assert!(
        has(&diags, &d.join("c.yaml"), "dangling symbolic link"),
        "{diags:?}"
    );
    // Named on the command line, the loop makes the path unreadable.
    let (_, unreadable, _) = check(&[d.join("a.yaml")]);
    assert!(unreadable);
}

#[test]
fn unreadable_entries_fifo_and_directory() {
    // Running as root, permissions cannot make a file unreadable; a FIFO (which must never be
    // opened: that would block) and a directory named like a policy file stand in for it.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let fifo = d.join("pipe.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let subdir = d.join("x.yaml");
    fs::create_dir(&subdir).expect("mkdir");
    write(d, "ok.yaml", &profile("ok"));
    let diags = refused(d);
    assert!(has(&diags, &fifo, "not a regular file"), "{diags:?}");
    assert!(has(&diags, &subdir, "is a directory"), "{diags:?}");
}

#[test]
fn unlistable_directory_is_unreadable() {
    // A regular file where a directory is expected cannot be listed: read it as a file instead
    // (explicit paths are always read). A path below a file cannot even be stat'ed.
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "file", &profile("a"));
    let (_, unreadable, diags) = check(&[f.join("below")]);
    assert!(unreadable, "{diags:?}");
}

fn load_text(text: &str) -> (bool, Vec<String>) {
    let l = load_sources(&[NamedText {
        name: "t.yaml".into(),
        text: text.into(),
    }]);
    (
        l.set.is_some(),
        l.diagnostics.iter().map(|d| d.to_string()).collect(),
    )
}

#[test]
fn billion_laughs_is_bounded() {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let levels = ["b", "c", "d", "e", "f", "g", "h", "i"];
    let mut prev = "a";
    for l in levels {
        let refs = vec![format!("*{prev}"); 9].join(",");
        text.push_str(&format!("{l}: &{l} [{refs}]\n"));
        prev = l;
    }
    let (valid, diags) = load_text(&text);
    assert!(!valid);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(diags[0].contains("billion laughs"), "{diags:?}");
}

#[test]
fn deep_nesting_is_bounded() {
    let depth = 100_000;
    let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let (valid, diags) = load_text(&text);
    assert!(!valid);
    assert!(
        diags.iter().any(|d| d.contains("nests too deeply")),
        "{diags:?}"
    );
    // Block nesting: a hundred indented levels stop at hostfw's own limit.
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
    }
    let (valid, diags) = load_text(&text);
    assert!(!valid);
    assert!(
        diags.iter().any(|d| d.contains("nesting deeper than 64")),
        "{diags:?}"
    );
}

#[test]
fn hundred_kilobyte_selector_is_refused() {
    let selector = format!("a in {{{}}}", vec!["'x'"; 25_000].join(","));
    assert!(selector.len() > 100_000);
    let text = format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  selector: \"{selector}\"\n"
    );
    let (valid, diags) = load_text(&text);
    assert!(!valid);
    assert!(
        diags
            .iter()
            .any(|d| d.contains("spec.selector") && d.contains("longer than 65536")),
        "{diags:?}"
    );
}

#[test]
fn long_but_allowed_selector_parses() {
    let selector = format!("a in {{{}}}", vec!["'x'"; 5_000].join(","));
    let text = format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  selector: \"{selector}\"\n"
    );
    let (valid, diags) = load_text(&text);
    assert!(valid, "{diags:?}");
}
