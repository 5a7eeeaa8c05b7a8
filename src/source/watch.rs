//! The directory source's change trigger: watching the policy directory with inotify through
//! the `notify` crate: the directory itself
//! (files created, written, renamed in or out, deleted, chmod'ed) and its parent (the directory
//! replaced, deleted and recreated, or a symlink to it swapped). Editors' temporary files are
//! filtered out by the caller's `counts` predicate (the policy reader's ignore rules). Never
//! reads the files. `notify` does not pass on IN_UNMOUNT / IN_IGNORED, so a filesystem
//! unmounted from under the directory ends its watch until the next parent event; mounting
//! over it is invisible to inotify either way (SIGHUP covers both).

use super::{Change as Trigger, Notify};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, INotifyWatcher, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};

/// What one batch of inotify events means for the policy set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing that counts (editor leftovers, other entries of the parent).
    None,
    /// Changed, and the last change is complete: a file closed, renamed in or out, deleted,
    /// chmod'ed, or the directory renamed into place.
    Settled,
    /// Changed, but a file was created and not closed yet, or the directory is gone or new.
    InProgress,
}

/// What one `notify` event says about the policy directory.
enum Seen {
    /// Lost events, or the directory itself created, removed, renamed or chmod'ed. `placed`:
    /// renamed into place, so complete.
    Dir { placed: bool },
    /// An entry of the directory created (`created`) or otherwise changed.
    Entry { name: OsString, created: bool },
    /// Not ours: another entry of the parent, or a kind of access that changes nothing.
    Nothing,
}

/// An inotify watch (via `notify`) on one directory and its parent. Blocking reads: no timers,
/// no polling.
pub struct DirWatcher {
    watcher: INotifyWatcher,
    events: Receiver<notify::Result<notify::Event>>,
    /// The directory as `parent.join(name)`: the exact path `notify` reports for both the
    /// parent's entry and the directory's own events, so the two compare equal.
    dir: PathBuf,
    counts: fn(&str) -> bool,
    /// Files created and not yet closed, deleted or moved away, across batches: a writer that
    /// pauses between creating a file and closing it (`cp` of a large file) is still writing,
    /// whatever else happens in the directory meanwhile.
    writing: BTreeSet<OsString>,
}

impl DirWatcher {
    /// Watch `dir` (which may not exist yet; its parent must). `counts` says whether a file name
    /// in the directory is a policy file (by name only: the file may already be gone).
    pub fn new(dir: &Path, counts: fn(&str) -> bool) -> io::Result<DirWatcher> {
        let name = dir.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a directory name", dir.display()),
            )
        })?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (tx, events) = mpsc::channel();
        let mut watcher =
            INotifyWatcher::new(tx, notify::Config::default()).map_err(|e| io_error(&parent, e))?;
        watcher
            .watch(&parent, RecursiveMode::NonRecursive)
            .map_err(|e| io_error(&parent, e))?;
        let mut w = DirWatcher {
            watcher,
            events,
            dir: parent.join(name),
            counts,
            writing: BTreeSet::new(),
        };
        w.rewatch();
        Ok(w)
    }

    /// Block until inotify reports something; what it means for the policy set.
    pub fn read(&mut self) -> io::Result<Change> {
        let batch = self.next_batch()?;
        Ok(self.interpret(batch))
    }

    /// Block for one event, then take every event already queued behind it: one batch, as one
    /// `read(2)` of the inotify descriptor would have returned.
    fn next_batch(&mut self) -> io::Result<Vec<notify::Event>> {
        let first = self
            .events
            .recv()
            .map_err(|_| io::Error::other("notify's event thread stopped"))?;
        std::iter::once(first)
            .chain(self.events.try_iter())
            .map(|r| r.map_err(|e| io_error(&self.dir, e)))
            .collect()
    }

    /// What a batch means; re-arms the directory watch when the directory may have been replaced.
    fn interpret(&mut self, batch: Vec<notify::Event>) -> Change {
        let mut changed = false;
        let mut rewatch = false;
        // The directory itself gone or just created: its files are still to come.
        let mut dir_pending = false;
        for ev in &batch {
            match self.classify(ev) {
                Seen::Dir { placed } => {
                    changed = true;
                    rewatch = true;
                    dir_pending = !placed;
                    // Another directory (or none): its files' writers are not the old ones'.
                    self.writing.clear();
                }
                Seen::Entry { name, created } => {
                    // A name that is not UTF-8 is an error the policy reader reports.
                    if name.to_str().is_none_or(self.counts) {
                        changed = true;
                        if created {
                            self.writing.insert(name);
                        } else {
                            self.writing.remove(&name);
                        }
                    }
                }
                Seen::Nothing => {}
            }
        }
        if rewatch {
            self.rewatch();
        }
        if !changed {
            Change::None
        } else if self.writing.is_empty() && !dir_pending {
            Change::Settled
        } else {
            Change::InProgress
        }
    }

    /// Map one `notify` event onto the inotify events the policy set cares about.
    fn classify(&self, ev: &notify::Event) -> Seen {
        if ev.need_rescan() {
            // The kernel queue overflowed and events were lost: assume the worst.
            return Seen::Dir { placed: false };
        }
        let kind = match ev.kind {
            // `notify` also reports a rename's two halves as one event with both paths; the
            // halves have already arrived on their own, so it adds nothing.
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => return Seen::Nothing,
            // IN_MODIFY, IN_OPEN: `notify` asks for them, but a write only counts when the file
            // is closed, and opening (the daemon reading the directory) changes nothing.
            EventKind::Modify(ModifyKind::Data(_))
            | EventKind::Access(AccessKind::Open(_))
            | EventKind::Access(AccessKind::Close(AccessMode::Read)) => return Seen::Nothing,
            k => k,
        };
        let Some(path) = ev.paths.first() else {
            return Seen::Nothing;
        };
        if *path == self.dir {
            // The parent's entry (created, deleted, renamed, chmod'ed) or the directory's own
            // IN_DELETE_SELF / IN_MOVE_SELF / IN_ATTRIB: `notify` gives both the same path.
            // Only a rename into place is complete. (A chmod of a symlinked directory's target
            // thus reads as in progress too, where raw inotify could tell it apart: a longer
            // debounce, nothing missed.)
            return Seen::Dir {
                placed: kind == EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            };
        }
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) if parent == self.dir => match kind {
                EventKind::Create(_) => Seen::Entry {
                    name: name.to_os_string(),
                    created: true,
                },
                // Closed after writing, renamed in or out, deleted, chmod'ed.
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(_))
                | EventKind::Modify(ModifyKind::Metadata(_))
                | EventKind::Remove(_) => Seen::Entry {
                    name: name.to_os_string(),
                    created: false,
                },
                _ => Seen::Nothing,
            },
            // Another entry of the parent.
            _ => Seen::Nothing,
        }
    }

    /// Point the directory watch at whatever `dir` names now.
    fn rewatch(&mut self) {
        // `notify` keys its watches by path: re-adding the path for a new directory would leave
        // the old directory's descriptor reporting under the same name (a swapped symlink's old
        // target never sees IN_MOVE_SELF). Drop it first; `notify` may already have dropped it
        // itself (directory deleted or moved away), which is not an error here.
        let _ = self.watcher.unwatch(&self.dir);
        // inotify's IN_ONLYDIR, which `notify` does not pass: a file of that name is not a
        // policy directory. A replacement later arrives as a parent event and re-arms.
        if !self.dir.is_dir() {
            log::debug!("cannot watch {}: not a directory", self.dir.display());
            return;
        }
        if let Err(e) = self.watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
            log::debug!("cannot watch {}: {e}", self.dir.display());
        }
    }
}

/// A `notify` error as an `io::Error` naming `path`, keeping the OS error kind when there is one.
fn io_error(path: &Path, e: notify::Error) -> io::Error {
    let kind = match &e.kind {
        notify::ErrorKind::Io(io) => io.kind(),
        notify::ErrorKind::PathNotFound => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{}: {e}", path.display()))
}

/// Run a `DirWatcher` on its own thread, calling `notify` for every batch that counts; the
/// thread ends when `notify` says nobody listens any more, or when the watch fails (logged:
/// changes then need SIGHUP).
pub(super) fn spawn(dir: PathBuf, counts: fn(&str) -> bool, mut notify: Notify) -> io::Result<()> {
    let mut watcher = DirWatcher::new(&dir, counts)?;
    std::thread::Builder::new()
        .name("hostfw-watch".into())
        .spawn(move || loop {
            let settled = match watcher.read() {
                Ok(Change::None) => continue,
                Ok(Change::Settled) => true,
                Ok(Change::InProgress) => false,
                Err(e) => {
                    log::error!(
                        "watching {} failed: {e}; changes now need SIGHUP",
                        dir.display()
                    );
                    return;
                }
            };
            if !notify(Trigger { settled }) {
                return;
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Events reach the watcher through `notify`'s thread, so after a file operation returns its
    //! events may still be on their way. `change` therefore creates a marker directory in the
    //! parent and reads until the marker's own event arrives: inotify queues events in the order
    //! the syscalls happened and `notify` forwards them in that order, so everything before the
    //! marker is exactly the operation's events. No sleeps, no timing.
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Stand-in for the policy reader's ignore rules: visible `*.yaml`/`*.yml` only.
    fn counts(name: &str) -> bool {
        !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
    }

    /// Unique marker names across the tests running in parallel.
    static MARKS: AtomicUsize = AtomicUsize::new(0);

    impl DirWatcher {
        /// Every event up to now, batch by batch: what the last batch that counted said.
        fn change(&mut self) -> Change {
            let parent = self.dir.parent().unwrap().to_path_buf();
            let mark = parent.join(format!(".mark-{}", MARKS.fetch_add(1, Ordering::Relaxed)));
            fs::create_dir(&mark).unwrap();
            let mut last = Change::None;
            loop {
                let batch = self.next_batch().unwrap();
                let marked = batch.iter().any(|e| e.paths.contains(&mark));
                match self.interpret(batch) {
                    Change::None => {}
                    c => last = c,
                }
                if marked {
                    return last;
                }
            }
        }

        /// Did anything count?
        fn drain(&mut self) -> bool {
            self.change() != Change::None
        }
    }

    struct Fixture {
        root: tempfile::TempDir,
        dir: PathBuf,
        watcher: DirWatcher,
    }

    fn fixture() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("policies.d");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("10-base.yaml"), "a: 1\n").unwrap();
        let watcher = DirWatcher::new(&dir, counts).unwrap();
        Fixture { root, dir, watcher }
    }

    #[test]
    fn writing_a_policy_file_counts() {
        let mut f = fixture();
        assert!(!f.watcher.drain(), "nothing happened yet");
        fs::write(f.dir.join("20-web.yaml"), "b: 2\n").unwrap();
        assert!(f.watcher.drain());
        fs::write(f.dir.join("10-base.yaml"), "a: 3\n").unwrap();
        assert!(f.watcher.drain());
    }

    #[test]
    fn a_file_still_open_is_in_progress_whatever_else_closes_meanwhile() {
        use std::io::Write;
        let mut f = fixture();
        let mut file = fs::File::create(f.dir.join("20-web.yaml")).unwrap();
        assert_eq!(f.watcher.change(), Change::InProgress);
        // Another file written and closed in a later batch: 20-web.yaml is still open.
        fs::write(f.dir.join("10-base.yaml"), "a: 3\n").unwrap();
        assert_eq!(f.watcher.change(), Change::InProgress);
        file.write_all(b"b: 2\n").unwrap();
        drop(file);
        assert_eq!(f.watcher.change(), Change::Settled);
    }

    #[test]
    fn a_file_still_open_for_writing_is_in_progress_until_closed() {
        use std::io::Write;
        let mut f = fixture();
        let mut file = fs::File::create(f.dir.join("20-web.yaml")).unwrap();
        assert_eq!(f.watcher.change(), Change::InProgress);
        file.write_all(b"b: 2\n").unwrap();
        drop(file);
        assert_eq!(f.watcher.change(), Change::Settled);
        // Written and closed in one go: one settled batch.
        fs::write(f.dir.join("30-db.yaml"), "c: 3\n").unwrap();
        assert_eq!(f.watcher.change(), Change::Settled);
    }

    #[test]
    fn reading_the_directory_does_not_count() {
        // `notify` always asks inotify for IN_OPEN: the daemon's own reload opens the directory
        // and every file in it, and hearing that as a change would reload forever.
        let mut f = fixture();
        let names: Vec<_> = fs::read_dir(&f.dir).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert_eq!(fs::read(f.dir.join("10-base.yaml")).unwrap(), b"a: 1\n");
        assert!(!f.watcher.drain());
    }

    #[test]
    fn writes_before_close_do_not_settle() {
        // `notify` also asks for IN_MODIFY; a write only counts once the file is closed.
        use std::io::Write;
        let mut f = fixture();
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(f.dir.join("10-base.yaml"))
            .unwrap();
        file.write_all(b"b: 2\n").unwrap();
        assert!(!f.watcher.drain(), "written, not closed");
        drop(file);
        assert_eq!(f.watcher.change(), Change::Settled);
    }

    #[test]
    fn chmod_of_the_directory_counts_and_keeps_the_watch() {
        // The parent's IN_ATTRIB re-arms the directory watch on the same directory: files must
        // still be heard afterwards.
        let mut f = fixture();
        fs::set_permissions(&f.dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(f.watcher.drain());
        fs::write(f.dir.join("20-web.yaml"), "b: 1\n").unwrap();
        assert_eq!(f.watcher.change(), Change::Settled);
    }

    #[test]
    fn rename_in_and_out_count() {
        let mut f = fixture();
        let outside = f.root.path().join("staged.yaml");
        fs::write(&outside, "c: 1\n").unwrap();
        assert!(
            !f.watcher.drain(),
            "a file beside the directory is not ours"
        );
        fs::rename(&outside, f.dir.join("30-db.yml")).unwrap();
        assert_eq!(f.watcher.change(), Change::Settled);
        fs::rename(f.dir.join("30-db.yml"), &outside).unwrap();
        assert_eq!(f.watcher.change(), Change::Settled);
    }

    #[test]
    fn editor_leftovers_are_ignored() {
        let mut f = fixture();
        fs::write(f.dir.join(".10-base.yaml.swp"), "x").unwrap();
        fs::write(f.dir.join("10-base.yaml~"), "x").unwrap();
        fs::write(f.dir.join("4913"), "x").unwrap();
        fs::remove_file(f.dir.join("4913")).unwrap();
        fs::write(f.dir.join("README"), "x").unwrap();
        assert!(!f.watcher.drain());
        // Vim's final step renames its work into place: that counts.
        fs::rename(f.dir.join("10-base.yaml~"), f.dir.join("10-base.yaml")).unwrap();
        assert!(f.watcher.drain());
    }

    #[test]
    fn chmod_and_delete_count() {
        let mut f = fixture();
        let file = f.dir.join("10-base.yaml");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(f.watcher.drain());
        fs::remove_file(&file).unwrap();
        assert!(f.watcher.drain());
    }

    #[test]
    fn directory_swapped_by_rename_is_followed() {
        let mut f = fixture();
        let staged = f.root.path().join("policies.d.new");
        fs::create_dir(&staged).unwrap();
        fs::write(staged.join("10-base.yaml"), "a: 2\n").unwrap();
        assert!(
            !f.watcher.drain(),
            "staging beside the directory is not a change yet"
        );
        let old = f.root.path().join("policies.d.old");
        fs::rename(&f.dir, &old).unwrap();
        assert_eq!(
            f.watcher.change(),
            Change::InProgress,
            "gone, not replaced yet"
        );
        fs::rename(&staged, &f.dir).unwrap();
        assert_eq!(f.watcher.change(), Change::Settled, "renamed into place");
        // The watch follows the new directory...
        fs::write(f.dir.join("20-web.yaml"), "b: 1\n").unwrap();
        assert!(f.watcher.drain());
        // ...and no longer hears the old one.
        fs::write(old.join("20-web.yaml"), "b: 1\n").unwrap();
        assert!(!f.watcher.drain());
    }

    #[test]
    fn directory_exchanged_atomically_is_followed() {
        use nix::fcntl::{renameat2, RenameFlags};
        let mut f = fixture();
        let staged = f.root.path().join("policies.d.new");
        fs::create_dir(&staged).unwrap();
        renameat2(None, &staged, None, &f.dir, RenameFlags::RENAME_EXCHANGE).unwrap();
        assert!(f.watcher.drain());
        fs::write(f.dir.join("20-web.yaml"), "b: 1\n").unwrap();
        assert!(f.watcher.drain());
        // `staged` now names the old directory.
        fs::write(staged.join("20-web.yaml"), "b: 1\n").unwrap();
        assert!(!f.watcher.drain());
    }

    #[test]
    fn directory_deleted_and_recreated_is_followed() {
        let mut f = fixture();
        fs::remove_dir_all(&f.dir).unwrap();
        assert_eq!(f.watcher.change(), Change::InProgress);
        fs::create_dir(&f.dir).unwrap();
        assert_eq!(f.watcher.change(), Change::InProgress);
        fs::write(f.dir.join("10-base.yaml"), "a: 1\n").unwrap();
        assert_eq!(f.watcher.change(), Change::Settled);
    }

    #[test]
    fn symlinked_directory_swap_is_followed() {
        let root = tempfile::tempdir().unwrap();
        let v1 = root.path().join("release-1");
        let v2 = root.path().join("release-2");
        fs::create_dir(&v1).unwrap();
        fs::create_dir(&v2).unwrap();
        let link = root.path().join("policies.d");
        std::os::unix::fs::symlink(&v1, &link).unwrap();
        let mut w = DirWatcher::new(&link, counts).unwrap();
        let tmp = root.path().join("policies.d.tmp");
        std::os::unix::fs::symlink(&v2, &tmp).unwrap();
        assert!(!w.drain());
        fs::rename(&tmp, &link).unwrap();
        assert!(w.drain());
        fs::write(v2.join("a.yaml"), "a: 1\n").unwrap();
        assert!(w.drain());
        fs::write(v1.join("a.yaml"), "a: 1\n").unwrap();
        assert!(!w.drain());
    }

    #[test]
    fn rsync_delay_updates_counts_when_files_land() {
        let mut f = fixture();
        let tmp = f.dir.join(".~tmp~");
        fs::create_dir(&tmp).unwrap();
        fs::write(tmp.join("10-base.yaml"), "a: 9\n").unwrap();
        assert!(
            !f.watcher.drain(),
            "rsync's staging area is not a policy file"
        );
        fs::rename(tmp.join("10-base.yaml"), f.dir.join("10-base.yaml")).unwrap();
        fs::remove_dir(&tmp).unwrap();
        assert!(f.watcher.drain());
    }

    #[test]
    fn missing_directory_is_picked_up_when_created() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("policies.d");
        let mut w = DirWatcher::new(&dir, counts).unwrap();
        fs::create_dir(&dir).unwrap();
        assert!(w.drain());
        fs::write(dir.join("a.yaml"), "a: 1\n").unwrap();
        assert!(w.drain());
    }
}
