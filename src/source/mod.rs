//! Where policy text comes from: the `Source` seam between "some store holds the admin's
//! resources" and the loader (`policy::parse` / `policy::validate`), which never reads anything
//! itself. A source hands over named texts (the name is what diagnostics cite: a file path for
//! the directory, a key for a datastore), an identity of what it handed over, and its own read
//! problems; it also owns its change trigger, a thread that says "read me again".
//!
//! Implementations: `directory::Directory` (the policy directory, watched with inotify through
//! `watch`) and `etcd::Etcd` (Calico's etcd v3 datastore, watched by its own gRPC thread).
//! The trait is deliberately small and synchronous: `read` blocks until it has a complete,
//! consistent snapshot (or knows it cannot get one), `watch` only starts a thread and returns;
//! neither keeps the daemon's loop waiting on anything but the read itself.

pub mod directory;
pub mod etcd;
pub mod watch;

use crate::policy::{Checked, Loaded};
use sha2::{Digest, Sha256};
use std::io;
use std::path::PathBuf;

pub use crate::policy::{NamedText, Snapshot};

/// Read the given files/directories (`directory`) and load them.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    load_checked(paths).loaded
}

/// Read the given files/directories and load them, keeping the "unreadable" flag.
pub fn load_checked(paths: &[PathBuf]) -> Checked {
    crate::policy::load_snapshot(&directory::read(paths))
}

/// One trigger from a source's watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The last change is complete (a file closed, renamed in, deleted), so a short quiet
    /// period is enough before reading; otherwise something may still be being written.
    pub settled: bool,
}

/// Where the daemon's trigger thread reports a change; `false` when nobody listens any more
/// (the thread then ends).
pub type Notify = Box<dyn FnMut(Change) -> bool + Send>;

/// A policy store: read a snapshot, or start the thread that announces changes.
pub trait Source {
    /// How to name the source in logs (`/etc/hostfw/policies.d`).
    fn describe(&self) -> String;
    /// Read everything now.
    fn read(&self) -> Snapshot;
    /// Start the change trigger on its own thread, calling `notify` for every relevant change.
    /// `Err` when it cannot start (the daemon then relies on SIGHUP).
    fn watch(&self, notify: Notify) -> io::Result<()>;
    /// The file name under which a text is kept in the last good copy (a policy directory, so
    /// it must be unique and end in `.yaml` or `.json`): the path's last component by default.
    fn saved_name(&self, name: &str) -> String {
        std::path::Path::new(name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string())
    }
    /// hostfw's hooks were just put into the kernel's chains (the first apply, or a repair).
    /// Where no rule used connection tracking before, a connection opened earlier is untracked,
    /// and the first packet its server sends after the hooks counts as NEW and meets the
    /// policy (dropped, retransmitted, until the client happens to send): a source holding a
    /// connection opens a new one, tracked from its first packet. Nothing by default.
    fn hooks_installed(&self) {}
    /// The connection to a datastore, for `status.json`; None for the policy directory.
    fn datastore(&self) -> Option<crate::status::Datastore> {
        None
    }
}

/// sha256 over (name, text) pairs in name order, hex. Each field is length-prefixed so no two
/// different sets produce the same byte stream.
pub fn content_hash<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = items.into_iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    for (name, text) in sorted {
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update((text.len() as u64).to_be_bytes());
        h.update(text.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_names_and_contents_not_order() {
        let ab = content_hash([("a.yaml", "1"), ("b.yaml", "2")]);
        let ba = content_hash([("b.yaml", "2"), ("a.yaml", "1")]);
        assert_eq!(ab, ba);
        assert_ne!(ab, content_hash([("a.yaml", "1"), ("b.yaml", "3")]));
        assert_ne!(ab, content_hash([("a.yaml", "1"), ("c.yaml", "2")]));
        // Moving a byte between name and text changes the hash (length prefixes).
        assert_ne!(
            content_hash([("a.yaml", "x1")]),
            content_hash([("a.yamlx", "1")])
        );
        assert_eq!(ab.len(), 64);
    }

    #[test]
    fn hash_of_empty_set_is_sha256_of_nothing() {
        // sha256("") is a well-known constant.
        assert_eq!(
            content_hash([]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
