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
use crate::recall::Recall;
use crate::source::{content_hash, Change, Notify, Snapshot, Source};
use crate::status;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// How long the daemon's first read waits for the watch thread's first list.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(5);

/// Calico's etcd v3 datastore as a policy source.
pub struct Etcd {
    cfg: EtcdConfig,
    watcher: OnceLock<Watcher>,
    decodes: Decodes,
}

impl Etcd {
    pub fn new(cfg: EtcdConfig) -> Etcd {
        Etcd {
            cfg,
            watcher: OnceLock::new(),
            decodes: Decodes::default(),
        }
    }
}

/// What each key's value decoded to in the last read, by a keyed digest of the value: a watch
/// event changes a key or two, and decoding every value (JSON parse, Calico's name rule, pretty
/// JSON out) of a 1,000-policy set took ~50 ms a load. The digest key is drawn per process, so
/// no writer of the datastore can aim a changed value at a remembered digest.
#[derive(Default)]
struct Decodes {
    key: RandomState,
    last: Mutex<Recall<String, u64, DecodeResult>>,
}

type DecodeResult = Result<layout::Decoded, Box<Diagnostic>>;

impl Decodes {
    /// `layout::texts` of `kvs`, decoding only the values that changed since the last call.
    fn texts<'a>(&self, kvs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> layout::Texts {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let texts = layout::texts_with(kvs, |key, value| {
            let digest = self.key.hash_one(value);
            last.get_or_make(key.to_string(), digest, || layout::decode(key, value))
                .clone()
        });
        last.finish();
        texts
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
        let texts = self.decodes.texts(
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

    fn hooks_installed(&self) {
        if let Some(w) = self.watcher.get() {
            w.reopen();
        }
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
    fn remembered_decodes_equal_fresh_ones_through_edits_errors_and_removals() {
        let key = |name: &str| format!("{}globalnetworkpolicies/{name}", layout::PREFIX);
        let gnp = |name: &str, port: u16| {
            format!(
                "{{\"kind\":\"GlobalNetworkPolicy\",\"apiVersion\":\"projectcalico.org/v3\",\
                 \"metadata\":{{\"name\":\"{name}\"}},\"spec\":{{\"selector\":\"all()\",\
                 \"ingress\":[{{\"action\":\"Allow\",\"protocol\":\"TCP\",\
                 \"destination\":{{\"ports\":[{port}]}}}}]}}}}"
            )
        };
        let (a, b) = (key("default.a"), key("default.b"));
        let steps: Vec<Vec<(String, String)>> = vec![
            vec![
                (a.clone(), gnp("default.a", 1)),
                (b.clone(), gnp("default.b", 2)),
            ],
            vec![
                (a.clone(), gnp("default.a", 1)),
                (b.clone(), gnp("default.b", 3)),
            ],
            vec![
                (a.clone(), "{not json".into()),
                (b.clone(), gnp("default.b", 3)),
            ],
            vec![(b.clone(), gnp("default.b", 3))],
            vec![
                (a.clone(), gnp("default.a", 1)),
                (b.clone(), gnp("default.b", 3)),
            ],
        ];
        let decodes = Decodes::default();
        for (i, kvs) in steps.iter().enumerate() {
            let pairs = || kvs.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
            let remembered = decodes.texts(pairs());
            assert_eq!(remembered, layout::texts(pairs()), "step {i}");
            assert_eq!(remembered.diagnostics.is_empty(), i != 2, "step {i}");
            assert_eq!(decodes.last.lock().unwrap().held(), kvs.len(), "step {i}");
        }
    }

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
