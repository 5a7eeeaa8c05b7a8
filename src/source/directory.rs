//! The policy directory as a `Source`, and the only reader of policy files: which files count,
//! in which order, and their text. It reads files and directory listings and nothing else; it
//! never parses YAML (that is `policy::parse`) and never decides validity beyond "this file can
//! be read as UTF-8 text". Its change trigger is the inotify watcher in `source::watch`.

use super::{NamedText, Notify, Snapshot, Source};
use crate::diag::Diagnostic;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// calicoctl splits files into documents of at most 10 MiB; a whole policy file larger than that
/// is certainly a mistake (a log, an image), so it is refused before it is read into memory.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// Most bytes read from all policy files together: a directory of many large files is refused
/// (with a diagnostic) rather than read into memory without bound.
pub const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;

/// Files and directories of policy files (`hostfw check a.yaml dir/`), or the one policy
/// directory the daemon watches (the first path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    paths: Vec<PathBuf>,
}

impl Directory {
    /// One policy directory.
    pub fn new(dir: impl Into<PathBuf>) -> Directory {
        Directory {
            paths: vec![dir.into()],
        }
    }

    /// Several files or directories, read in the order given.
    pub fn paths(paths: &[PathBuf]) -> Directory {
        Directory {
            paths: paths.to_vec(),
        }
    }
}

impl Source for Directory {
    fn describe(&self) -> String {
        let shown: Vec<String> = self.paths.iter().map(|p| display(p)).collect();
        shown.join(", ")
    }

    fn read(&self) -> Snapshot {
        read(&self.paths)
    }

    fn watch(&self, notify: Notify) -> io::Result<()> {
        let dir = self.paths.first().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no policy directory to watch")
        })?;
        super::watch::spawn(dir.clone(), is_policy_file_name, notify)
    }
}

/// Reading in progress: the snapshot so far and the bytes still allowed by the total limit.
struct Reader {
    out: Snapshot,
    budget: u64,
}

/// Read every policy file under `paths` (files or directories). The revision is the content
/// hash over file names (without their directory) and texts, so the saved last good copy of a
/// set has the same identity as the directory it came from.
pub fn read(paths: &[PathBuf]) -> Snapshot {
    read_with_budget(paths, MAX_TOTAL_BYTES)
}

fn read_with_budget(paths: &[PathBuf], budget: u64) -> Snapshot {
    let mut reader = Reader {
        out: Snapshot::default(),
        budget,
    };
    for path in paths {
        read_top(path, &mut reader);
    }
    let mut out = reader.out;
    out.revision = super::content_hash(
        out.texts
            .iter()
            .map(|t| (file_name(&t.name), t.text.as_str())),
    );
    out
}

/// A file's name without its directory (texts are named by path).
fn file_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// A path named by the caller: a directory is listed (not recursively), a file is always read,
/// whatever its name.
fn read_top(path: &Path, r: &mut Reader) {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            r.out.unreadable = true;
            r.out
                .diagnostics
                .push(Diagnostic::file_error(display(path), describe_io(&e, path)));
            return;
        }
    };
    if meta.is_dir() {
        read_dir(path, r);
    } else {
        read_file(path, &meta, r);
    }
}

fn read_dir(dir: &Path, r: &mut Reader) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            r.out.unreadable = true;
            r.out.diagnostics.push(Diagnostic::file_error(
                display(dir),
                format!("cannot list policy directory: {}", describe_io(&e, dir)),
            ));
            return;
        }
    };
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    // A name that is not UTF-8: read it (named lossily) when its bytes look
                    // like a policy file's, otherwise it is not ours to judge and is skipped
                    // like any README.
                    use std::os::unix::ffi::OsStrExt;
                    let lossy = String::from_utf8_lossy(entry.file_name().as_bytes()).into_owned();
                    if is_policy_file_name(&lossy) {
                        names.push((lossy, entry.path()));
                    }
                    continue;
                };
                if is_policy_file_name(&name) {
                    names.push((name, entry.path()));
                }
            }
            Err(e) => r.out.diagnostics.push(Diagnostic::file_error(
                display(dir),
                format!("cannot list policy directory: {e}"),
            )),
        }
    }
    // Name order (byte order of the file name), as calicoctl walks a directory.
    names.sort();
    for (_, path) in names {
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                // Not recursive: a subdirectory named like a policy file is a mistake worth
                // reporting, not something to descend into.
                r.out.diagnostics.push(Diagnostic::file_error(
                    display(&path),
                    "is a directory, not a policy file (subdirectories are not read)",
                ));
            }
            Ok(meta) => read_file(&path, &meta, r),
            Err(e) => r.out.diagnostics.push(Diagnostic::file_error(
                display(&path),
                describe_io(&e, &path),
            )),
        }
    }
}

/// Whether a directory entry is a policy file: `*.yaml`, `*.yml`, `*.json` (any case), but not a
/// dotfile or an editor or package-manager leftover.
pub fn is_policy_file_name(name: &str) -> bool {
    if name.starts_with('.') || name.starts_with('#') || name.ends_with('~') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    let leftovers = [".swp", ".rpmnew", ".rpmsave", ".rpmorig"];
    if leftovers.iter().any(|s| lower.ends_with(s)) || lower.contains(".dpkg-") {
        return false;
    }
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| lower.len() > ext.len() && lower.ends_with(ext))
}

/// Refuses a file of `len` bytes (first the size stat gives, then the bytes actually read, which
/// `stat` can understate) when it passes the per-file limit or what is left of the total budget:
/// records why and returns true. Past the budget, no later file is read either. `exact`: `len`
/// is the whole size (from stat), not a read stopped one byte past the limit.
fn refuse_size(r: &mut Reader, name: &str, len: u64, exact: bool) -> bool {
    let message = if len > MAX_FILE_BYTES {
        let size = if exact {
            format!("{len} bytes, ")
        } else {
            String::new()
        };
        format!(
            "file is {size}larger than the {} MiB limit; not read",
            MAX_FILE_BYTES / (1024 * 1024)
        )
    } else if len > r.budget {
        r.budget = 0;
        format!(
            "not read: the policy files together exceed {} MiB",
            MAX_TOTAL_BYTES / (1024 * 1024)
        )
    } else {
        return false;
    };
    r.out
        .diagnostics
        .push(Diagnostic::file_error(name, message));
    true
}

fn read_file(path: &Path, meta: &fs::Metadata, r: &mut Reader) {
    let name = display(path);
    if !meta.is_file() {
        r.out.diagnostics.push(Diagnostic::file_error(
            name,
            "is not a regular file (FIFO, socket or device); not read",
        ));
        return;
    }
    if refuse_size(r, &name, meta.len(), true) {
        return;
    }
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            r.out
                .diagnostics
                .push(Diagnostic::file_error(name, describe_io(&e, path)));
            return;
        }
    };
    // The size stat gives may be wrong (a file still growing, a /proc or /sys file behind a
    // symlink, whose size reads 0): never take more than the limits plus one byte, and judge by
    // the bytes actually read.
    let cap = MAX_FILE_BYTES.min(r.budget);
    let mut bytes = Vec::with_capacity(meta.len().min(cap) as usize);
    if let Err(e) = file.take(cap + 1).read_to_end(&mut bytes) {
        r.out
            .diagnostics
            .push(Diagnostic::file_error(name, describe_io(&e, path)));
        return;
    }
    if refuse_size(r, &name, bytes.len() as u64, false) {
        return;
    }
    match String::from_utf8(bytes) {
        Ok(text) => {
            if let Some(pos) = text.find('\0') {
                r.out.diagnostics.push(binary_diag(name, &text, pos));
                return;
            }
            r.budget = r.budget.saturating_sub(text.len() as u64);
            r.out.texts.push(NamedText { name, text });
        }
        Err(e) => {
            let pos = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..pos]).into_owned();
            let (line, column) = line_col(&prefix, pos);
            let mut d = Diagnostic::file_error(
                name,
                "file is not valid UTF-8 text (binary data?); policy files must be UTF-8 YAML or JSON",
            );
            d.line = line;
            d.column = column;
            r.out.diagnostics.push(d);
        }
    }
}

fn binary_diag(name: String, text: &str, pos: usize) -> Diagnostic {
    let (line, column) = line_col(text, pos);
    let mut d = Diagnostic::file_error(
        name,
        "file contains a NUL byte (binary data?); policy files must be UTF-8 YAML or JSON",
    );
    d.line = line;
    d.column = column;
    d
}

/// 1-based line and column (in characters) of byte offset `pos` in `text`.
fn line_col(text: &str, pos: usize) -> (u32, u32) {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line as u32, col as u32)
}

fn describe_io(e: &io::Error, path: &Path) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => {
            if fs::symlink_metadata(path).is_ok() {
                "is a dangling symbolic link".to_string()
            } else {
                "does not exist".to_string()
            }
        }
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            "too many levels of symbolic links (symlink loop)".to_string()
        }
        _ => format!("cannot read: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_file_names() {
        for ok in ["a.yaml", "b.YML", "c.Yaml", "d.json", "10-x.yaml"] {
            assert!(is_policy_file_name(ok), "{ok}");
        }
        for no in [
            ".a.yaml",
            "a.yaml~",
            "a.yaml.swp",
            ".a.yaml.swp",
            "a.yaml.dpkg-dist",
            "a.yaml.dpkg-old",
            "a.yaml.rpmnew",
            "a.yaml.rpmsave",
            "#a.yaml#",
            "a.txt",
            "yaml",
            ".yaml",
            "a.yaml.bak",
        ] {
            assert!(!is_policy_file_name(no), "{no}");
        }
    }

    #[test]
    fn total_size_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["a.yaml", "b.yaml", "c.yaml"] {
            fs::write(dir.path().join(name), "x".repeat(100)).expect("write");
        }
        let out = read_with_budget(&[dir.path().to_path_buf()], 250);
        let read: Vec<&str> = out.texts.iter().map(|t| file_name(&t.name)).collect();
        assert_eq!(read, vec!["a.yaml", "b.yaml"]);
        assert_eq!(out.diagnostics.len(), 1);
        assert!(out.diagnostics[0].file.ends_with("c.yaml"));
        assert!(out.diagnostics[0].message.contains("together exceed"));
    }

    /// Symlinks to files whose size stat reports as 0 (as /proc files do) still count, by the
    /// bytes actually read.
    #[test]
    fn files_that_stat_as_empty_count_by_what_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["a.yaml", "b.yaml"] {
            std::os::unix::fs::symlink("/proc/self/status", dir.path().join(name))
                .expect("symlink");
        }
        let status_len = fs::read("/proc/self/status").expect("status").len() as u64;
        let out = read_with_budget(&[dir.path().to_path_buf()], status_len * 3 / 2);
        assert_eq!(out.texts.len(), 1, "{:?}", out.diagnostics);
        assert!(out.diagnostics[0].message.contains("together exceed"));
    }

    /// A stray file whose name is not UTF-8 is not a reason to reject the set; one that is
    /// named like a policy file is read under a lossy name.
    #[test]
    fn non_utf8_file_names() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let stray = std::ffi::OsStr::from_bytes(b"notes-\xff.txt");
        fs::write(dir.path().join(stray), "x").expect("write");
        let policy = std::ffi::OsStr::from_bytes(b"p-\xff.yaml");
        fs::write(dir.path().join(policy), "kind: x\n").expect("write");
        let out = read(&[dir.path().to_path_buf()]);
        assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
        assert_eq!(out.texts.len(), 1);
        assert!(
            out.texts[0].name.ends_with("p-\u{fffd}.yaml"),
            "{}",
            out.texts[0].name
        );
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé", 6), (2, 3));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
