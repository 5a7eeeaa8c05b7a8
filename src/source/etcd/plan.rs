//! What a push writes: the stored state it starts from (`Listing`), the guarded writes that
//! turn it into the files' content (`plan`), and, only when the operator opts in, their split
//! into several transactions (`batches`). Pure.

use super::layout::{self, Encoded, Stamp, CLUSTER_INFORMATION, STATIC_TIERS};
use crate::policy::parse::RawResource;
use std::collections::{BTreeMap, BTreeSet};

/// etcd's default `--max-txn-ops`, named in the message when the server refuses a push as one
/// transaction.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// Bytes of keys and values per transaction of a split push, below etcd's default 1.5 MiB
/// `--max-request-bytes`.
pub const MAX_TXN_BYTES: usize = 1024 * 1024;

/// One stored value and its mod revision (the resource version calicoctl guards updates by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// Every managed key at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub revision: i64,
    pub kvs: BTreeMap<String, Stored>,
}

/// One write of a push: put (create when `expect` is None, else update guarded by the mod
/// revision read) or delete (guarded likewise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put {
        key: String,
        value: String,
        expect: Option<i64>,
    },
    Delete {
        key: String,
        expect: i64,
    },
}

impl Write {
    pub fn key(&self) -> &str {
        match self {
            Write::Put { key, .. } | Write::Delete { key, .. } => key,
        }
    }

    /// Bytes of key and value this write sends.
    pub fn size(&self) -> usize {
        match self {
            Write::Put { key, value, .. } => key.len() + value.len(),
            Write::Delete { key, .. } => key.len(),
        }
    }
}

/// Split writes into transactions of at most `max_ops` writes and `MAX_TXN_BYTES`, keeping
/// their order (see `WRITE_ORDER`). Only for a push the operator allowed to be split: between
/// two transactions hosts see part of the set.
pub fn batches(writes: &[Write], max_ops: usize) -> Vec<&[Write]> {
    let max_ops = max_ops.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, w) in writes.iter().enumerate() {
        let full = i - start == max_ops || (i > start && bytes + w.size() > MAX_TXN_BYTES);
        if full {
            out.push(&writes[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += w.size();
    }
    if start < writes.len() {
        out.push(&writes[start..]);
    }
    out
}

/// The writes of one push, and what they are made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every managed resource of the files, encoded (written or already equal).
    pub encoded: Vec<Encoded>,
    pub writes: Vec<Write>,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deleted: usize,
    /// Resources of kinds the datastore layout does not hold (kind, name): not written.
    pub skipped: Vec<(String, String)>,
}

/// The order a push writes kinds in, so that a push split into several transactions passes
/// through the least harmful states: tiers before the policies in them (a policy in a missing
/// tier makes the whole set invalid, so hosts keep the last good one), sets and profiles before
/// the rules that match them, and host endpoints after the policies that select them (a new
/// endpoint comes up with its policies already stored instead of default-deny). Deletions go
/// last, in the reverse order.
const WRITE_ORDER: [&str; 8] = [
    "Tier",
    "GlobalNetworkSet",
    "Profile",
    "FelixConfiguration",
    "GlobalNetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "HostEndpoint",
    CLUSTER_INFORMATION,
];

fn kind_rank(kind: &str) -> usize {
    WRITE_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(WRITE_ORDER.len())
}

/// Whether `--prune` may delete this key: never Calico's own ClusterInformation or static tiers.
pub fn prunable(key: &str) -> bool {
    match layout::parse_key(key) {
        Some(k) if k.kind == CLUSTER_INFORMATION => false,
        Some(k) if k.kind == "Tier" => !STATIC_TIERS.contains(&k.name),
        Some(_) => true,
        None => false,
    }
}

/// Plan a push of validated `resources` over `existing`: create what is absent (guarded by
/// version 0), update what differs (guarded by its mod revision, keeping its uid and creation
/// time), leave equal values alone, and with `prune` delete prunable keys the files do not
/// name. Writes go in `WRITE_ORDER`, deletions last and in reverse order.
pub fn plan(
    resources: &[RawResource],
    existing: &BTreeMap<String, Stored>,
    prune: bool,
    new_stamp: &mut dyn FnMut() -> Stamp,
) -> Plan {
    let mut plan = Plan::default();
    let mut encoded: Vec<Encoded> = Vec::new();
    for r in resources {
        let kind = r.node.get_text("kind").unwrap_or_default();
        let name = r
            .node
            .get("metadata")
            .and_then(|m| m.get_text("name"))
            .unwrap_or_default();
        let Some(key) = layout::key(kind, name) else {
            plan.skipped.push((kind.to_string(), name.to_string()));
            continue;
        };
        let stamp = existing
            .get(&key)
            .and_then(|s| Stamp::of_value(&s.value))
            .unwrap_or_else(&mut *new_stamp);
        if let Some(e) = layout::encode(&r.node, &stamp) {
            encoded.push(e);
        }
    }
    encoded.sort_by(|a, b| (kind_rank(a.kind), &a.key).cmp(&(kind_rank(b.kind), &b.key)));
    for e in &encoded {
        match existing.get(&e.key) {
            Some(s) if layout::same_value(&s.value, e.value.as_bytes()) => plan.unchanged += 1,
            Some(s) => {
                plan.updated += 1;
                plan.writes.push(Write::Put {
                    key: e.key.clone(),
                    value: e.value.clone(),
                    expect: Some(s.mod_revision),
                });
            }
            None => {
                plan.created += 1;
                plan.writes.push(Write::Put {
                    key: e.key.clone(),
                    value: e.value.clone(),
                    expect: None,
                });
            }
        }
    }
    if prune {
        let named: BTreeSet<&str> = encoded.iter().map(|e| e.key.as_str()).collect();
        let mut gone: Vec<(&String, &Stored)> = existing
            .iter()
            .filter(|(k, _)| prunable(k) && !named.contains(k.as_str()))
            .collect();
        gone.sort_by_key(|(k, _)| {
            let rank = layout::parse_key(k).map_or(0, |r| kind_rank(r.kind));
            (std::cmp::Reverse(rank), (*k).clone())
        });
        for (key, s) in gone {
            plan.deleted += 1;
            plan.writes.push(Write::Delete {
                key: key.clone(),
                expect: s.mod_revision,
            });
        }
    }
    plan.encoded = encoded;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(n: usize, size: usize) -> Write {
        Write::Put {
            key: format!("k{n}"),
            value: "x".repeat(size),
            expect: None,
        }
    }

    #[test]
    fn batches_respect_the_operation_and_size_limits() {
        let many: Vec<Write> = (0..300).map(|n| put(n, 10)).collect();
        let sizes: Vec<usize> = batches(&many, 128).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [128, 128, 44]);
        let sizes: Vec<usize> = batches(&many[..20], 8).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [8, 8, 4]);
        let big: Vec<Write> = (0..5).map(|n| put(n, 400 * 1024)).collect();
        let sizes: Vec<usize> = batches(&big, 128).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(batches(&[], 8).is_empty());
    }

    #[test]
    fn host_endpoints_are_written_after_policies_and_deleted_first() {
        let hep = "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: h1-eth0\nspec:\n  node: h1\n  interfaceName: eth0\n---\n";
        let files = format!("{hep}{FILES}");
        let (resources, diags) = parse::parse("f.yaml", &files);
        assert!(diags.is_empty());
        let kinds = |p: &Plan| -> Vec<String> {
            p.writes
                .iter()
                .filter_map(|w| layout::parse_key(w.key()).map(|k| k.kind.to_string()))
                .collect()
        };
        let written = plan(&resources, &BTreeMap::new(), false, &mut stamp);
        assert_eq!(
            kinds(&written),
            ["Tier", "GlobalNetworkPolicy", "HostEndpoint"]
        );
        let existing: BTreeMap<String, Stored> = written
            .encoded
            .iter()
            .map(|e| (e.key.clone(), stored(&e.value, 2)))
            .collect();
        let pruned = plan(&[], &existing, true, &mut stamp);
        assert_eq!(
            kinds(&pruned),
            ["HostEndpoint", "GlobalNetworkPolicy", "Tier"]
        );
    }

    use crate::policy::parse;

    const FILES: &str = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  order: 10\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: security.ssh\nspec:\n  tier: security\n  selector: all()\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool\nspec: {}\n";

    fn stamp() -> Stamp {
        Stamp {
            uid: "new".into(),
            creation_timestamp: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn stored(value: &str, rev: i64) -> Stored {
        Stored {
            value: value.as_bytes().to_vec(),
            mod_revision: rev,
        }
    }

    #[test]
    fn a_push_creates_updates_keeps_and_prunes_in_order() {
        let (resources, diags) = parse::parse("f.yaml", FILES);
        assert!(diags.is_empty());
        let first = plan(&resources, &BTreeMap::new(), false, &mut stamp);
        assert_eq!((first.created, first.updated, first.unchanged), (2, 0, 0));
        assert_eq!(first.skipped, [("IPPool".to_string(), "pool".to_string())]);
        let keys: Vec<&str> = first.writes.iter().map(Write::key).collect();
        assert_eq!(
            keys,
            [
                "/calico/resources/v3/projectcalico.org/tiers/security",
                "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/security.ssh",
            ],
            "tiers first"
        );

        // Stored as written: nothing to do; the stamp of the stored value is kept.
        let mut existing: BTreeMap<String, Stored> = first
            .encoded
            .iter()
            .map(|e| (e.key.clone(), stored(&e.value, 5)))
            .collect();
        let again = plan(&resources, &existing, false, &mut || panic!("no new stamp"));
        assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 2));
        assert!(again.writes.is_empty());

        // Changed behind our back: an update guarded by the mod revision read.
        let tier_key = "/calico/resources/v3/projectcalico.org/tiers/security".to_string();
        let changed = first.encoded[0].value.replace("10", "20");
        existing.insert(tier_key.clone(), stored(&changed, 7));
        for extra in [
            "tiers/old",
            "tiers/default",
            "tiers/kube-admin",
            "clusterinformations/default",
            "globalnetworkpolicies/default.gone",
        ] {
            existing.insert(format!("{}{extra}", layout::PREFIX), stored("{}", 3));
        }
        let pruned = plan(&resources, &existing, true, &mut stamp);
        assert_eq!(
            pruned.writes[0],
            Write::Put {
                key: tier_key,
                value: first.encoded[0].value.clone(),
                expect: Some(7)
            }
        );
        let deleted: Vec<&str> = pruned.writes[1..].iter().map(Write::key).collect();
        assert_eq!(
            deleted,
            [
                "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/default.gone",
                "/calico/resources/v3/projectcalico.org/tiers/old",
            ],
            "policies before tiers; Calico's static tiers and ClusterInformation stay"
        );
        let without = plan(&resources, &existing, false, &mut stamp);
        assert_eq!(without.deleted, 0);
    }
}
