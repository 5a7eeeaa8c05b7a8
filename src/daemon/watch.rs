//! Watching the policy directory with inotify: the directory itself (files created, written,
//! renamed in or out, deleted, chmod'ed) and its parent (the directory replaced, deleted and
//! recreated, or a symlink to it swapped). Editors' temporary files are filtered out by the
//! caller's `counts` predicate (the policy reader's ignore rules). Never reads the files.

use super::Event;
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

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

/// What happens to entries of the policy directory that can change the policy set.
fn dir_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

/// What happens in the parent that can replace the policy directory.
fn parent_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_ONLYDIR
}

/// An inotify watch on one directory and its parent. Blocking reads: no timers, no polling.
pub struct DirWatcher {
    inotify: Inotify,
    dir: PathBuf,
    name: OsString,
    parent_wd: WatchDescriptor,
    dir_wd: Option<WatchDescriptor>,
    counts: fn(&str) -> bool,
}

impl DirWatcher {
    /// Watch `dir` (which may not exist yet; its parent must). `counts` says whether a file name
    /// in the directory is a policy file (by name only: the file may already be gone).
    pub fn new(dir: &Path, counts: fn(&str) -> bool) -> io::Result<DirWatcher> {
        let name = dir
            .file_name()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not a directory name", dir.display()),
                )
            })?
            .to_os_string();
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(io::Error::from)?;
        let parent_wd = inotify.add_watch(&parent, parent_mask()).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("{}: {e}", parent.display()),
            )
        })?;
        let mut w = DirWatcher {
            inotify,
            dir: dir.to_path_buf(),
            name,
            parent_wd,
            dir_wd: None,
            counts,
        };
        w.rewatch();
        Ok(w)
    }

    /// Block until inotify reports something; what it means for the policy set.
    pub fn read(&mut self) -> io::Result<Change> {
        let events = match self.inotify.read_events() {
            Ok(events) => events,
            Err(Errno::EINTR) => return Ok(Change::None),
            Err(e) => return Err(e.into()),
        };
        let mut changed = false;
        let mut rewatch = false;
        // Files created in this batch and not yet closed, deleted or moved away: still being
        // written. The directory itself gone or just created: its files are still to come.
        let mut open: BTreeSet<OsString> = BTreeSet::new();
        let mut dir_pending = false;
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                // Events were lost: assume the worst.
                changed = true;
                rewatch = true;
                dir_pending = true;
            } else if ev.wd == self.parent_wd {
                if ev.name.as_deref() == Some(self.name.as_os_str()) {
                    changed = true;
                    rewatch = true;
                    // Renamed into place: complete. Created, removed or moved away: not yet.
                    dir_pending = !ev.mask.contains(AddWatchFlags::IN_MOVED_TO);
                }
            } else if Some(ev.wd) == self.dir_wd {
                if ev
                    .mask
                    .intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF)
                {
                    changed = true;
                    rewatch = true;
                    dir_pending = true;
                } else if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    rewatch = true;
                } else {
                    match ev.name {
                        // A name that is not UTF-8 is an error the policy reader reports.
                        Some(n) if n.to_str().is_none_or(self.counts) => {
                            changed = true;
                            if ev.mask.contains(AddWatchFlags::IN_CREATE) {
                                open.insert(n);
                            } else {
                                open.remove(&n);
                            }
                        }
                        Some(_) => {}
                        // The directory's own attributes (chmod): readability may have changed.
                        None => changed = true,
                    }
                }
            }
            // Anything else comes from a replaced directory's old watch: not ours any more.
        }
        if rewatch {
            self.rewatch();
        }
        Ok(if !changed {
            Change::None
        } else if open.is_empty() && !dir_pending {
            Change::Settled
        } else {
            Change::InProgress
        })
    }

    /// Point the directory watch at whatever `dir` names now.
    fn rewatch(&mut self) {
        match self.inotify.add_watch(&self.dir, dir_mask()) {
            Ok(wd) => {
                if let Some(old) = self.dir_wd.replace(wd) {
                    if old != wd {
                        // The old directory may still exist elsewhere: stop hearing about it.
                        let _ = self.inotify.rm_watch(old);
                    }
                }
            }
            Err(e) => {
                log::debug!("cannot watch {}: {e}", self.dir.display());
                if let Some(old) = self.dir_wd.take() {
                    let _ = self.inotify.rm_watch(old);
                }
            }
        }
    }
}

/// Run a `DirWatcher` on its own thread, sending `PolicyChanged` for every relevant batch.
pub(crate) fn spawn(dir: PathBuf, counts: fn(&str) -> bool, tx: Sender<Event>) -> io::Result<()> {
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
            if tx.send(Event::PolicyChanged { settled }).is_err() {
                return;
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! inotify queues events synchronously inside the syscall that caused them, so after a file
    //! operation returns, `drain` sees exactly its events: no sleeps, no timing.
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::fs;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;

    /// Stand-in for the policy reader's ignore rules: visible `*.yaml`/`*.yml` only.
    fn counts(name: &str) -> bool {
        !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
    }

    impl DirWatcher {
        /// Every queued event, without blocking: what the last batch that counted said.
        fn change(&mut self) -> Change {
            let mut last = Change::None;
            loop {
                let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
                if poll(&mut fds, PollTimeout::ZERO).unwrap() == 0 {
                    return last;
                }
                match self.read().unwrap() {
                    Change::None => {}
                    c => last = c,
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
