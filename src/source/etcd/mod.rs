//! The etcd v3 policy source: Calico's datastore layout (`layout`), where to find etcd
//! (`config`), what a push writes (`plan`), the gRPC calls (`client`) and the watch thread
//! (`watch`). Here, the datastore behind the `Source` seam: `read` hands the loader every
//! managed value as a text named by its key (the watch thread's copy in the daemon, one list
//! otherwise), `watch` starts the watch thread, `datastore` reports the connection for
//! `status.json`. Every host of a fleet, and calicoctl, share one datastore.

pub mod client;
pub mod config;
pub mod layout;
pub mod plan;
pub mod watch;

use self::config::EtcdConfig;
use self::watch::{State, Watcher};
use crate::diag::Diagnostic;
use crate::source::{content_hash, Change, Notify, Snapshot, Source};
use crate::status;
use std::sync::OnceLock;
use std::time::Duration;

/// How long the daemon's first read waits for the watch thread's first list.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(5);

/// Calico's etcd v3 datastore as a policy source.
pub struct Etcd {
    cfg: EtcdConfig,
    watcher: OnceLock<Watcher>,
}

impl Etcd {
    pub fn new(cfg: EtcdConfig) -> Etcd {
        Etcd {
            cfg,
            watcher: OnceLock::new(),
        }
    }
}

/// The name diagnostics about the datastore as a whole cite.
fn whole(cfg: &EtcdConfig) -> String {
    format!("etcd {}", cfg.endpoints.join(","))
}

impl Source for Etcd {
    fn describe(&self) -> String {
        whole(&self.cfg)
    }

    fn read(&self) -> Snapshot {
        let (listing, error) = match self.watcher.get() {
            Some(w) => {
                let s = w.settled_snapshot(FIRST_LIST_WAIT);
                (s.listing, s.status.error)
            }
            None => match client::list_once(&self.cfg) {
                Ok(l) => (Some(l), None),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        let Some(listing) = listing else {
            let why = error.unwrap_or_else(|| "no answer yet".to_string());
            return Snapshot {
                diagnostics: vec![Diagnostic::file_error(
                    whole(&self.cfg),
                    format!("cannot read the datastore: {why}"),
                )],
                unreadable: true,
                ..Snapshot::default()
            };
        };
        let texts = layout::texts(
            listing
                .kvs
                .iter()
                .map(|(k, s)| (k.as_str(), s.value.as_slice())),
        );
        let mut diagnostics = texts.diagnostics;
        if !texts.ready {
            diagnostics.push(Diagnostic::file_error(
                format!("{}clusterinformations/default", layout::PREFIX),
                "the datastore is not ready (ClusterInformation datastoreReady: false): \
                 reconciliation paused, the rules in force stay",
            ));
        }
        let texts = texts.sources;
        Snapshot {
            revision: content_hash(texts.iter().map(|t| (t.name.as_str(), t.text.as_str()))),
            texts,
            diagnostics,
            unreadable: false,
        }
    }

    fn watch(&self, mut notify: Notify) -> std::io::Result<()> {
        // A change in etcd is complete when it is seen: it was written in one transaction.
        let w = Watcher::spawn(self.cfg.clone(), move || {
            notify(Change { settled: true });
        })?;
        // A second call keeps the first thread.
        let _ = self.watcher.set(w);
        Ok(())
    }

    /// `<plural>-<name>.json`: unique per key, and a policy file the directory reader accepts.
    fn saved_name(&self, name: &str) -> String {
        match layout::parse_key(name) {
            Some(k) => format!("{}-{}.json", k.plural, k.name),
            None => name.replace('/', "_"),
        }
    }

    fn datastore(&self) -> Option<status::Datastore> {
        let s = self.watcher.get()?.snapshot();
        let state = match s.status.state {
            State::Connecting => "connecting",
            State::Connected if !s.ready() => "paused",
            State::Connected => "connected",
            State::Disconnected => "disconnected",
        };
        Some(status::Datastore {
            kind: config::DatastoreType::Etcdv3.as_str().to_string(),
            state: state.to_string(),
            endpoints: s.status.endpoints,
            revision: s.status.revision,
            last_event: s.status.last_event,
            error: s.status.error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_good_copy_names_each_key_uniquely_as_a_policy_file() {
        let source = Etcd::new(EtcdConfig::default());
        let cases = [
            (
                "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/default.a",
                "globalnetworkpolicies-default.a.json",
            ),
            (
                "/calico/resources/v3/projectcalico.org/tiers/a",
                "tiers-a.json",
            ),
            (
                "/calico/resources/v3/projectcalico.org/profiles/a",
                "profiles-a.json",
            ),
        ];
        for (key, file) in cases {
            assert_eq!(source.saved_name(key), file);
            assert!(crate::source::directory::is_policy_file_name(file));
        }
    }

    #[test]
    fn no_watch_thread_means_no_datastore_status() {
        assert_eq!(Etcd::new(EtcdConfig::default()).datastore(), None);
    }
}
