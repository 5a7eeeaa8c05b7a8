//! The only reader of which TCP ports sshd listens on, for the lockout guard: the listening
//! sockets of `/proc/net/tcp{,6}` (this thread's network namespace) whose inode a process named
//! `sshd` holds open (`/proc/<pid>/fd/* -> socket:[inode]`). No shell, no `sshd -T`; reading
//! other processes' fds needs root, and without it (or without sshd) the answer is empty and
//! the guard falls back to port 22. The parsers and the cache (`PortCache`) are pure.
//!
//! Walking every process's fds is the dear part (the daemon asks on every policy load), so its
//! answer is kept until the set of listening socket inodes changes: sshd can only start or stop
//! listening on a port by opening or closing a listening socket, and either changes that set.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

/// `st` of a listening socket in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// Local port by socket inode, for the listening sockets in `/proc/net/tcp{,6}` text.
pub fn listening_sockets(text: &str) -> BTreeMap<u64, u16> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
        else {
            continue;
        };
        if *state != LISTEN {
            continue;
        }
        let port = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if let (Some(port), Ok(inode)) = (port, inode.parse::<u64>()) {
            out.insert(inode, port);
        }
    }
    out
}

/// The inode of a `socket:[N]` fd link target.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// sshd's ports as last found, and the listening sockets they were found among.
#[derive(Debug, Default)]
pub struct PortCache {
    last: Option<(BTreeSet<u64>, BTreeSet<u16>)>,
}

impl PortCache {
    /// sshd's ports among `sockets` (port by inode): the last answer when the inodes are the
    /// ones it was found among, else `scan`'s, which is then kept. No listening socket means
    /// no sshd port, without a scan.
    pub fn ports(
        &mut self,
        sockets: &BTreeMap<u64, u16>,
        scan: impl FnOnce(&BTreeMap<u64, u16>) -> BTreeSet<u16>,
    ) -> BTreeSet<u16> {
        if sockets.is_empty() {
            return BTreeSet::new();
        }
        let inodes: BTreeSet<u64> = sockets.keys().copied().collect();
        if let Some((seen, ports)) = &self.last {
            if *seen == inodes {
                return ports.clone();
            }
        }
        let ports = scan(sockets);
        self.last = Some((inodes, ports.clone()));
        ports
    }
}

/// The process-wide cache `listening_ports` consults.
static CACHE: Mutex<PortCache> = Mutex::new(PortCache { last: None });

/// This thread's network namespace's `/proc/net/tcp` and `/proc/net/tcp6`, as text (an
/// unreadable one is left out). Each read call walks the kernel's whole table of established
/// sockets, shared by every namespace and sized by memory (1.6 ms a walk with 23 GB): the two
/// files are read at the same time, each into a buffer the listing fits in (a zero-sized proc
/// file read as `read_to_string` does starts with 32-byte reads, a walk each), and the guard
/// reads them once per load and hands the texts to `listening_ports` as well.
pub fn socket_tables() -> Vec<String> {
    let net = if Path::new("/proc/thread-self/net").exists() {
        Path::new("/proc/thread-self/net")
    } else {
        Path::new("/proc/net")
    };
    crate::parallel::map(["tcp", "tcp6"], |file| read_listing(&net.join(file)))
        .into_iter()
        .flatten()
        .collect()
}

/// A proc listing read whole, in as few read calls as it allows (one page of lines each, then
/// the one that finds the end).
fn read_listing(path: &Path) -> Option<String> {
    let mut text = Vec::with_capacity(LISTING_BUFFER);
    std::fs::File::open(path)
        .ok()?
        .read_to_end(&mut text)
        .ok()?;
    String::from_utf8(text).ok()
}

/// Room for a network namespace's listing of a few hundred sockets before the buffer grows.
const LISTING_BUFFER: usize = 64 * 1024;

/// `socket_tables`, read on a thread of its own while the caller does other work (loading the
/// policies it is to judge).
pub struct SocketTables(std::thread::JoinHandle<Vec<String>>);

impl SocketTables {
    pub fn start() -> SocketTables {
        SocketTables(std::thread::spawn(socket_tables))
    }

    /// The texts, once read; a panic in the reader goes on here.
    pub fn wait(self) -> Vec<String> {
        self.0
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// The ports sshd listens on, given `socket_tables` (empty when none is found).
pub fn listening_ports(tables: &[String]) -> BTreeSet<u16> {
    let mut sockets = BTreeMap::new();
    for text in tables {
        sockets.extend(listening_sockets(text));
    }
    // A panic while holding the lock leaves a valid cache behind; keep using it.
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    cache.ports(&sockets, scan_sshd)
}

/// Which of `sockets` a process named sshd holds open: every process's `comm`, and the fds of
/// those named sshd.
fn scan_sshd(sockets: &BTreeMap<u64, u16>) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return ports;
    };
    for entry in procs.flatten() {
        let pid = entry.path();
        let is_sshd =
            std::fs::read_to_string(pid.join("comm")).is_ok_and(|comm| comm.trim_end() == "sshd");
        if !is_sshd {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(pid.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let inode = std::fs::read_link(fd.path())
                .ok()
                .and_then(|t| socket_inode(&t.to_string_lossy()));
            if let Some(port) = inode.and_then(|i| sockets.get(&i)) {
                ports.insert(*port);
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_longer_than_its_buffer_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tcp");
        let line = format!("{:<149}\n", "   0: 00000000:0016 00000000:0000 0A");
        let text = line.repeat(3 * LISTING_BUFFER / line.len());
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_listing(&path).as_deref(), Some(text.as_str()));
        assert_eq!(read_listing(&dir.path().join("absent")), None);
    }

    #[test]
    fn listening_sockets_by_inode() {
        // A listener on 0.0.0.0:2222 (0x08AE), an established session, a listener on :::22.
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                  0: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n\
                  1: 0100007F:08AE 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1\n";
        let v6 = "  sl  local_address remote_address st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                  0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(
            listening_sockets(v4),
            [(4242, 2222)].into_iter().collect::<BTreeMap<_, _>>()
        );
        assert_eq!(
            listening_sockets(v6),
            [(77, 22)].into_iter().collect::<BTreeMap<_, _>>()
        );
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn the_scan_runs_again_only_when_the_listening_sockets_change() {
        let mut cache = PortCache::default();
        let scans = std::cell::Cell::new(0);
        let scan = |found: &[u16]| {
            let found: BTreeSet<u16> = found.iter().copied().collect();
            let scans = &scans;
            move |_: &BTreeMap<u64, u16>| {
                scans.set(scans.get() + 1);
                found
            }
        };
        let before: BTreeMap<u64, u16> = [(10, 22), (11, 8080)].into_iter().collect();
        let want: BTreeSet<u16> = [22].into_iter().collect();
        assert_eq!(cache.ports(&before, scan(&[22])), want);
        assert_eq!(
            cache.ports(&before, scan(&[2222])),
            want,
            "same sockets: cached"
        );
        assert_eq!(scans.get(), 1);

        // sshd restarted on another port: a new listening socket, so a new scan.
        let after: BTreeMap<u64, u16> = [(12, 2222), (11, 8080)].into_iter().collect();
        let moved: BTreeSet<u16> = [2222].into_iter().collect();
        assert_eq!(cache.ports(&after, scan(&[2222])), moved);
        assert_eq!(scans.get(), 2);

        // Nothing listens: nothing to look for, and no scan.
        assert_eq!(cache.ports(&BTreeMap::new(), scan(&[22])), BTreeSet::new());
        assert_eq!(scans.get(), 2);
    }
}
