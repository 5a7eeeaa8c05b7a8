//! One writer at a time: the lock file shared by the daemon and one-shot commands (diff, apply,
//! flush). An exclusive `flock` on `<run dir>/hostfw.lock`, held until the guard is dropped; the
//! holder writes its pid into the file so a waiter can say whom it waits for. The kernel drops the
//! lock when the holder dies, so a stale file never blocks anyone.

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Holding this means holding the lock.
#[derive(Debug)]
pub struct LockGuard {
    _lock: Flock<File>,
    path: PathBuf,
}

impl LockGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot use the run directory {}: {source}", path.display())]
    RunDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the lock file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// Take the lock at `path`, creating its directory (`fsutil::private_dir`: 0700, refused when
/// another user owns it or may write it) if needed. The file is 0600 and never opened through a
/// symlink: a user who could open it could `flock` it and freeze every hostfw writer. If another
/// process holds it, `on_wait` is called once with that process's pid (when known) and the call
/// blocks until the lock is free.
pub fn acquire(path: &Path, on_wait: impl FnOnce(Option<u32>)) -> Result<LockGuard, LockError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::private_dir(dir).map_err(|source| LockError::RunDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let open = || {
        crate::fsutil::private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| LockError::Open {
                path: path.to_path_buf(),
                source,
            })
    };
    let lock = match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            on_wait(holder_pid(&mut file));
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, source)| LockError::Lock {
                path: path.to_path_buf(),
                source,
            })?
        }
        Err((_, source)) => {
            return Err(LockError::Lock {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut lock = lock;
    record_pid(&mut lock);
    Ok(LockGuard {
        _lock: lock,
        path: path.to_path_buf(),
    })
}

/// Take the lock, logging who holds it while waiting: what every command uses.
pub fn acquire_logged(path: &Path) -> Result<LockGuard, LockError> {
    acquire(path, |pid| match pid {
        Some(pid) => log::warn!(
            "waiting for the hostfw lock {} held by pid {pid}",
            path.display()
        ),
        None => log::warn!("waiting for the hostfw lock {}", path.display()),
    })
}

/// The lock, waiting at most `timeout`: a daemon holds it for its whole life, and a rollback
/// must not wait for it forever (a pending confirmation pauses the daemon's writes). The waiting
/// thread is left behind on timeout; it takes the lock and drops it when it gets it.
pub fn acquire_within(path: &Path, timeout: Duration) -> Option<LockGuard> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(acquire(&path, |_| {}));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(guard)) => Some(guard),
        _ => None,
    }
}

fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Best effort: the pid only helps a waiter's message.
fn record_pid(file: &mut File) {
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = writeln!(file, "{}", std::process::id());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn creates_the_directory_and_records_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/hostfw/hostfw.lock");
        let guard = acquire(&path, |_| panic!("nobody else holds it")).unwrap();
        assert_eq!(guard.path(), path);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let file_mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(file_mode & 0o777, 0o600);
    }

    #[test]
    fn a_second_taker_waits_and_learns_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hostfw.lock");
        let first = acquire(&path, |_| panic!("free at first")).unwrap();
        let (told, heard) = mpsc::channel();
        let (done, finished) = mpsc::channel();
        let waiter_path = path.clone();
        let waiter = std::thread::spawn(move || {
            let guard = acquire(&waiter_path, |pid| told.send(pid).unwrap()).unwrap();
            done.send(()).unwrap();
            drop(guard);
        });
        // The waiter reports the holder (this process) before it can get the lock.
        let pid = heard.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(pid, Some(std::process::id()));
        assert!(
            finished.try_recv().is_err(),
            "got the lock while it was held"
        );
        drop(first);
        finished.recv_timeout(Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
    }
}
