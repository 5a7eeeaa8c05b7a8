//! The etcd watch thread: one helper thread with its own current-thread tokio runtime keeps an
//! in-memory copy of every managed key. It lists at a revision, watches from the next revision
//! (previous values, progress notifications), re-lists when the watch is cancelled or its
//! revision compacted, and reconnects with exponential backoff capped at `MAX_BACKOFF`,
//! resuming the watch after the last revision it delivered (a resume the server compacted
//! meanwhile cancels the watch, and the copy is listed again). Each change calls `notify` (the
//! daemon turns it into an event on its one channel); the daemon reads the copy synchronously
//! with `Watcher::snapshot`. `Watcher::reopen` makes it drop its connection and resume on a
//! new one at once (see `Source::hooks_installed`). This thread never touches the kernel.

use super::client;
use super::config::EtcdConfig;
use super::layout::{self, PREFIX};
use super::plan::{Listing, Stored};
use etcd_client::{EventType, WatchOptions};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// First delay before reconnecting; doubled after each failure.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The connection as the daemon reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not yet listed once.
    Connecting,
    Connected,
    /// The last attempt failed or the watch broke; the copy is what was last seen.
    Disconnected,
}

/// What the watch thread knows, for `status.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub endpoints: Vec<String>,
    /// The revision the copy reflects: the list's, then the last one the watch delivered (0
    /// before the first list).
    pub revision: i64,
    /// When the copy last changed (RFC 3339), if it has.
    pub last_event: Option<String>,
    /// The last connection or watch error, cleared by a successful list.
    pub error: Option<String>,
}

struct Shared {
    /// None until the first successful list.
    listing: Option<Listing>,
    status: Status,
}

/// Handle on the watch thread's copy.
#[derive(Clone)]
pub struct Watcher {
    shared: Arc<Mutex<Shared>>,
    reopen: Arc<tokio::sync::Notify>,
}

/// Why a session ended without a connection error.
enum Ended {
    /// The watch was cancelled or its revision compacted: list again.
    Cancelled,
    /// `Watcher::reopen` asked for a new connection: resume on it.
    Reopen,
}

/// What the copy held at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub listing: Option<Listing>,
    pub status: Status,
}

impl Snapshot {
    /// Whether ClusterInformation `default` lets hosts apply the datastore (true when absent
    /// or undecodable: a broken flag is reported as an invalid object, never as a pause).
    pub fn ready(&self) -> bool {
        let key = format!("{PREFIX}clusterinformations/default");
        let Some(stored) = self.listing.as_ref().and_then(|l| l.kvs.get(&key)) else {
            return true;
        };
        !matches!(
            layout::decode(&key, &stored.value),
            Ok(layout::Decoded::Ready(false))
        )
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watcher {
    /// Start the thread. `notify` is called after every change of the copy or of the state.
    pub fn spawn(
        cfg: EtcdConfig,
        notify: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Watcher> {
        let shared = Arc::new(Mutex::new(Shared {
            listing: None,
            status: Status {
                state: State::Connecting,
                endpoints: cfg.endpoints.clone(),
                revision: 0,
                last_event: None,
                error: None,
            },
        }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_shared = Arc::clone(&shared);
        let reopen = Arc::new(tokio::sync::Notify::new());
        let thread_reopen = Arc::clone(&reopen);
        std::thread::Builder::new()
            .name("hostfw-etcd".to_string())
            .spawn(move || runtime.block_on(run(cfg, thread_shared, thread_reopen, notify)))?;
        Ok(Watcher { shared, reopen })
    }

    /// Drop the connection and resume the watch on a new one, after the last revision
    /// delivered (nothing is missed or replayed); the state stays connected. Returns at once.
    pub fn reopen(&self) {
        self.reopen.notify_one();
    }

    /// The copy once the first list succeeded or failed, waiting at most `timeout` for it
    /// (the daemon's first read races the thread's first list).
    pub fn settled_snapshot(&self, timeout: Duration) -> Snapshot {
        let end = std::time::Instant::now() + timeout;
        loop {
            let s = self.snapshot();
            if s.status.state != State::Connecting || std::time::Instant::now() >= end {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let s = lock(&self.shared);
        Snapshot {
            listing: s.listing.clone(),
            status: s.status.clone(),
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}

async fn run(
    cfg: EtcdConfig,
    shared: Arc<Mutex<Shared>>,
    reopen: Arc<tokio::sync::Notify>,
    mut notify: impl FnMut(),
) {
    let mut backoff = MIN_BACKOFF;
    // The first session lists; after a lost connection or a reopen the next one resumes the
    // watch after the last revision it delivered (etcd sends every change since); after a
    // cancelled or compacted watch it lists again.
    let mut relist = true;
    loop {
        match session(&cfg, &shared, &reopen, &mut notify, &mut backoff, relist).await {
            // Cancelled or compacted: list again at once.
            Ok(Ended::Cancelled) => relist = true,
            Ok(Ended::Reopen) => {
                log::info!("etcd: reopening the connection");
                relist = false;
            }
            Err(e) => {
                relist = false;
                let was = {
                    let mut s = lock(&shared);
                    let was = s.status.state;
                    s.status.state = State::Disconnected;
                    s.status.error = Some(e.to_string());
                    was
                };
                log::warn!("etcd: {e}; retrying in {} ms", backoff.as_millis());
                // Once per outage: every retry re-reading the same copy would only cost work.
                if was != State::Disconnected {
                    notify();
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One connection: list (when `relist`, or when there is no copy yet) or resume from the
/// copy's revision, then follow the watch until it ends. Ok when the watch was cancelled
/// (compaction) or `reopen` was notified, Err when the connection failed.
async fn session(
    cfg: &EtcdConfig,
    shared: &Mutex<Shared>,
    reopen: &tokio::sync::Notify,
    notify: &mut impl FnMut(),
    backoff: &mut Duration,
    relist: bool,
) -> Result<Ended, client::EtcdError> {
    let mut client = client::connect(cfg).await?;
    // The copy's revision is the last one the watch delivered (`delivered_through`).
    let resume = match lock(shared).listing.as_ref() {
        Some(l) if !relist => Some(l.revision),
        _ => None,
    };
    // A resume on a connection reopened on request changes nothing the daemon reads.
    let mut announce = true;
    let revision = match resume {
        Some(revision) => {
            let mut s = lock(shared);
            announce = s.status.state != State::Connected;
            if announce {
                log::info!("etcd: reconnected; resuming the watch after revision {revision}");
            }
            s.status.state = State::Connected;
            s.status.error = None;
            revision
        }
        None => {
            let listing = client::list(&mut client).await?;
            let revision = listing.revision;
            let mut s = lock(shared);
            let changed = s.listing.as_ref().map(|l| &l.kvs) != Some(&listing.kvs);
            if changed {
                s.status.last_event = Some(now());
            }
            s.listing = Some(listing);
            s.status.state = State::Connected;
            s.status.revision = revision;
            s.status.error = None;
            revision
        }
    };
    *backoff = MIN_BACKOFF;
    if announce {
        notify();
    }
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1)
        .with_prev_key()
        .with_progress_notify();
    let mut stream = client
        .watch_client()
        .max_decoding_message_size(client::MAX_RESPONSE_BYTES)
        .watch(PREFIX, Some(options))
        .await?;
    loop {
        let message = tokio::select! {
            message = stream.message() => message?,
            () = reopen.notified() => return Ok(Ended::Reopen),
        };
        let Some(resp) = message else {
            return Err(client::EtcdError::WatchEnded);
        };
        if resp.canceled() || resp.compact_revision() != 0 {
            let reason: Vec<String> = [
                (resp.compact_revision() != 0)
                    .then(|| format!("compacted at revision {}", resp.compact_revision())),
                (!resp.cancel_reason().is_empty()).then(|| resp.cancel_reason().to_string()),
            ]
            .into_iter()
            .flatten()
            .collect();
            log::warn!(
                "etcd watch cancelled ({}); listing again at the current revision",
                reason.join("; ")
            );
            return Ok(Ended::Cancelled);
        }
        let revisions: Vec<i64> = resp
            .events()
            .iter()
            .filter_map(|e| e.kv().map(|kv| kv.mod_revision()))
            .collect();
        let through = delivered_through(
            resp.created(),
            &revisions,
            resp.header().map(|h| h.revision()),
        );
        let mut changed = false;
        let mut replayed = 0;
        let mut guard = lock(shared);
        let s = &mut *guard;
        if let Some(listing) = s.listing.as_mut() {
            let held = listing.revision;
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                // Already in the copy: the watch started at or before it.
                if kv.mod_revision() <= held {
                    replayed += 1;
                    continue;
                }
                let Ok(key) = kv.key_str() else { continue };
                if layout::parse_key(key).is_none() {
                    continue;
                }
                changed = true;
                match event.event_type() {
                    EventType::Put => {
                        listing.kvs.insert(
                            key.to_string(),
                            Stored {
                                value: kv.value().to_vec(),
                                mod_revision: kv.mod_revision(),
                            },
                        );
                    }
                    EventType::Delete => {
                        listing.kvs.remove(key);
                    }
                }
            }
            if let Some(rev) = through.filter(|rev| *rev > held) {
                listing.revision = rev;
                s.status.revision = rev;
            }
            if replayed > 0 {
                log::warn!(
                    "etcd: the watch replayed {replayed} change(s) at or below revision {held}, \
                     already in the copy; skipped"
                );
            }
        }
        if changed {
            s.status.last_event = Some(now());
        }
        drop(guard);
        if changed {
            notify();
        }
    }
}

/// The revision through which a watch response proves every change delivered: its last
/// event's, or for a progress notification (no events, not the creation) its header's, which
/// etcd sends only to a watcher that has been sent everything up to it
/// (server/storage/mvcc/watchable_store.go `progress`). None for the creation response, whose
/// header is the server's revision when the watch was created, ahead of the history a resumed
/// watch still has to replay (server/etcdserver/api/v3rpc/watch.go); and never an event
/// batch's header, which during catch-up is the server's current revision while the batch
/// stops at most 1,000 revisions further (`syncWatchers` in watchable_store.go). A reconnect
/// resumes after this revision, so it neither replays nor skips a change.
fn delivered_through(created: bool, event_revisions: &[i64], header: Option<i64>) -> Option<i64> {
    match event_revisions.iter().max() {
        Some(last) => Some(*last),
        None if created => None,
        None => header,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_point_comes_from_events_and_progress_never_from_creation() {
        // A catch-up batch: header at the server's current revision, events further back.
        assert_eq!(
            delivered_through(false, &[41, 42, 42, 57], Some(2000)),
            Some(57)
        );
        // A progress notification: everything through its header has been sent.
        assert_eq!(delivered_through(false, &[], Some(90)), Some(90));
        // The creation response says where the server is, not what was sent.
        assert_eq!(delivered_through(true, &[], Some(2000)), None);
        assert_eq!(delivered_through(false, &[], None), None);
    }
}
