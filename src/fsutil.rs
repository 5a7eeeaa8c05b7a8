//! hostfw's own files in the run and state directories: private directories (0700, owned by
//! the caller, refused when another user owns them or may write them), private files (0600,
//! opened with `O_NOFOLLOW` and `O_CLOEXEC`, so a symlink planted by another user is never
//! followed and no child inherits the descriptor), and `write_atomic`, which replaces a file so
//! a reader sees the old contents or the new, never a mix. docs/design.md, "Local users".

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file hostfw creates in its run and state directories.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Mode of the directories it creates there.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Create `dir` (and missing parents, 0700) unless it exists, then check it is safe to keep
/// private files in: a real directory (not a symlink), owned by this process's effective user,
/// not writable by group or others. Another user's directory could hold a symlink named like
/// one of our files (root would then truncate its target) or let them take our lock.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR_MODE)
            .create(dir)?,
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let meta = fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to use {}: {why}", dir.display()),
        ))
    };
    let me = nix::unistd::geteuid().as_raw();
    if meta.file_type().is_symlink() {
        return refuse("it is a symbolic link".into());
    }
    if !meta.is_dir() {
        return refuse("it is not a directory".into());
    }
    if meta.uid() != me {
        return refuse(format!(
            "it is owned by uid {}, not by this user (uid {me})",
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return refuse(format!(
            "group or others may write to it (mode {:o}); `chmod go-w` it",
            meta.permissions().mode() & 0o7777
        ));
    }
    Ok(())
}

/// Options for a private file: 0600 when created, never through a symlink, not inherited.
pub fn private_options() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options
        .mode(PRIVATE_FILE_MODE)
        .custom_flags(libc_flags::NOFOLLOW | libc_flags::CLOEXEC);
    options
}

/// Open-flag values, from nix (which re-exports libc's).
mod libc_flags {
    use nix::fcntl::OFlag;
    pub const NOFOLLOW: i32 = OFlag::O_NOFOLLOW.bits();
    pub const CLOEXEC: i32 = OFlag::O_CLOEXEC.bits();
}

/// Replace `path` with `bytes` (mode 0600): write a temp file beside it, fsync, rename over.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    // A leftover of a crashed process with the same pid; never followed if it is a symlink.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = private_options().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_files_and_dirs_have_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run/hostfw");
        private_dir(&run).unwrap();
        assert_eq!(mode(&run), PRIVATE_DIR_MODE);
        let file = run.join("status.json");
        write_atomic(&file, b"{}").unwrap();
        assert_eq!(mode(&file), PRIVATE_FILE_MODE);
    }

    #[test]
    fn an_unsafe_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = private_dir(&open).unwrap_err();
        assert!(err.to_string().contains("may write"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let err = private_dir(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn a_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("hostfw.lock");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(private_options()
            .read(true)
            .write(true)
            .create(true)
            .open(&link)
            .is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    // Replacement itself is covered through `status::write` (status.rs tests).
    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old").unwrap();
        // Renaming a file over a non-empty directory fails after the temp file is written.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), b"").unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["blocked", "state.json"]);
    }
}
