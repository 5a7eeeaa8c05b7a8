//! The last good policy set on disk (`<state_dir>/last-good/`): replaced as a whole, atomically,
//! after every successful apply, so a crash at any moment leaves either the old set or the new
//! one. Reading it back goes through the ordinary policy source (`source::directory`), which also
//! gives its identity.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// One policy file: its name (no directory) and text, kept compressed. The daemon holds a
/// load's files from the load until the reconcile that puts them in force has ended, through
/// the render, when its memory peaks: at 10,000 policies the texts were 16 MB of that peak and
/// are ~3 MB compressed (policy files repeat themselves: keys, selectors, port lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    name: String,
    compressed: Box<[u8]>,
}

impl PolicyFile {
    pub fn new(name: String, text: &str) -> PolicyFile {
        PolicyFile {
            name,
            compressed: crate::compress::squeeze(text),
        }
    }

    /// The text, as it was given.
    fn text(&self) -> io::Result<String> {
        crate::compress::expand(&self.compressed)
    }
}

/// Replace the directory `target` with exactly `files`. Written into a temp directory beside it,
/// synced, then swapped in with `renameat2(RENAME_EXCHANGE)` (or renamed into place when there
/// is nothing to replace). A file whose text the set in `target` already holds is hard-linked
/// from there instead of written and synced again: a set from etcd is one file per key, and
/// syncing a thousand files took 1.6 s of every edit's reaction (an edit changes one or two).
pub fn save(target: &Path, files: &[PolicyFile]) -> io::Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    crate::fsutil::private_dir(parent)?;
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "last-good".to_string());
    remove_leftovers(parent, &base);
    let staging = parent.join(format!(".{base}.tmp.{}", std::process::id()));
    let result = write_dir(&staging, files, target).and_then(|()| swap_in(&staging, target));
    if staging.exists() {
        // After an exchange `staging` holds the previous set; after a failure, the partial new one.
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// The copies are 0600 in a 0700 directory: policy files may be private (0600) at the source.
/// Files `previous` holds with the same name and text are linked, not copied: their data is on
/// disk already, and the final sync of `dir` makes the new names durable.
fn write_dir(dir: &Path, files: &[PolicyFile], previous: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .mode(crate::fsutil::PRIVATE_DIR_MODE)
        .create(dir)?;
    for f in files {
        if f.name.is_empty() || f.name.contains('/') || f.name.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unexpected policy file name {:?}", f.name),
            ));
        }
        let path = dir.join(&f.name);
        let old = previous.join(&f.name);
        let text = f.text()?;
        if holds(&old, text.as_bytes()) && fs::hard_link(&old, &path).is_ok() {
            continue;
        }
        let mut out = crate::fsutil::private_options()
            .write(true)
            .create_new(true)
            .open(&path)?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
    }
    fs::File::open(dir)?.sync_all()
}

/// True when `path` is a plain file (never a link to elsewhere) holding exactly `text`.
fn holds(path: &Path, text: &[u8]) -> bool {
    let plain =
        fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == text.len() as u64);
    plain && fs::read(path).is_ok_and(|bytes| bytes == text)
}

fn swap_in(staging: &Path, target: &Path) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags};
    match renameat2(None, staging, None, target, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => {}
        Err(Errno::ENOENT) => fs::rename(staging, target)?,
        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
            // No exchange on this filesystem: move the old set aside first. A crash between the
            // two renames loses the old set but never leaves a half-written one.
            let aside = staging.with_extension("old");
            fs::rename(target, &aside)?;
            fs::rename(staging, target)?;
            let _ = fs::remove_dir_all(&aside);
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(parent) = target.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Staging directories a crash left behind.
fn remove_leftovers(parent: &Path, base: &str) {
    let prefix = format!(".{base}.tmp.");
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> PolicyFile {
        PolicyFile::new(name.into(), text)
    }

    fn listing(dir: &Path) -> Vec<(String, String)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn save_creates_then_replaces_the_whole_set() {
        let state = tempfile::tempdir().unwrap();
        let target = state.path().join("last-good");
        save(&target, &[file("a.yaml", "1"), file("b.yaml", "2")]).unwrap();
        assert_eq!(
            listing(&target),
            vec![("a.yaml".into(), "1".into()), ("b.yaml".into(), "2".into())]
        );
        save(&target, &[file("c.yaml", "3")]).unwrap();
        // b.yaml is gone: the set is replaced, not merged.
        assert_eq!(listing(&target), vec![("c.yaml".into(), "3".into())]);
        // Nothing but the set is left in the state directory.
        let names: Vec<_> = fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["last-good".to_string()]);
    }

    #[test]
    fn unchanged_files_are_linked_from_the_old_set_and_changed_ones_written_anew() {
        use std::os::unix::fs::MetadataExt;
        let state = tempfile::tempdir().unwrap();
        let target = state.path().join("last-good");
        save(
            &target,
            &[
                file("a.json", "1"),
                file("b.json", "2"),
                file("c.json", "3"),
            ],
        )
        .unwrap();
        let inode = |name: &str| fs::metadata(target.join(name)).unwrap().ino();
        let (a, b) = (inode("a.json"), inode("b.json"));
        // Elsewhere: a symlink in the old set is never taken over, even with the same text.
        let outside = state.path().join("outside");
        fs::write(&outside, "3").unwrap();
        fs::remove_file(target.join("c.json")).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("c.json")).unwrap();
        save(
            &target,
            &[
                file("a.json", "1"),
                file("b.json", "22"),
                file("c.json", "3"),
            ],
        )
        .unwrap();
        assert_eq!(inode("a.json"), a, "unchanged: linked");
        assert_ne!(inode("b.json"), b, "changed: a new file");
        let c = fs::symlink_metadata(target.join("c.json")).unwrap();
        assert!(c.is_file(), "the symlink was replaced by a copy");
        assert_eq!(
            listing(&target),
            vec![
                ("a.json".into(), "1".into()),
                ("b.json".into(), "22".into()),
                ("c.json".into(), "3".into())
            ]
        );
        // The old set's files are gone with it; the linked one lives on in the new set.
        assert_eq!(fs::metadata(target.join("a.json")).unwrap().nlink(), 1);
    }

    #[test]
    fn leftover_staging_from_a_crash_is_cleaned() {
        let state = tempfile::tempdir().unwrap();
        let stale = state.path().join(".last-good.tmp.99999");
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("x.yaml"), "half").unwrap();
        save(&state.path().join("last-good"), &[file("a.yaml", "1")]).unwrap();
        assert!(!stale.exists());
    }

    #[test]
    fn bad_names_are_refused_and_the_old_set_kept() {
        let state = tempfile::tempdir().unwrap();
        let target = state.path().join("last-good");
        save(&target, &[file("a.yaml", "1")]).unwrap();
        assert!(save(&target, &[file("../evil.yaml", "x")]).is_err());
        assert_eq!(listing(&target), vec![("a.yaml".into(), "1".into())]);
    }
}
