//! The only module that spawns processes: iptables/ip6tables save and restore, ipset, backend
//! detection, behind the `Dataplane` trait. It knows nothing of policies or the model: it moves
//! text between hostfw and the kernel's tools and classifies their failures.

mod backend;
mod exec;
// Only the crate's unit tests drive it (the integration tests use the real tools in network
// namespaces), so release builds do not carry it.
#[cfg(test)]
pub(crate) mod fake;
mod real;

pub use backend::{choose_backend, BackendError, BackendObservation, BackendProbe};
pub use real::{probe, RealDataplane};

use crate::ruleset::{Family, TableName};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Which iptables implementation the kernel rules live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `ip_tables` x_tables (`iptables-legacy-*`).
    Legacy,
    /// nf_tables through the iptables compatibility layer (`iptables-nft-*`).
    Nft,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Legacy => "legacy",
            Backend::Nft => "nft",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every way talking to the kernel's tools can fail. Each variant names the program and keeps
/// what it said; a failed restore also keeps the input it was given.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("{program} not found in PATH: install it (apt-get install {package})")]
    MissingBinary {
        program: String,
        package: &'static str,
    },
    #[error("{program}: permission denied: run as root (it needs CAP_NET_ADMIN): {stderr}")]
    PermissionDenied { program: String, stderr: String },
    #[error(
        "{program}: the kernel does not support this (a missing kernel module, or IPv6 disabled?): {stderr}"
    )]
    KernelUnsupported { program: String, stderr: String },
    #[error("{program}: the xtables lock is held or the resource is busy (will retry): {stderr}")]
    Busy { program: String, stderr: String },
    #[error("{program} failed ({status}): {stderr}\n--- input ---\n{input}--- end of input ---")]
    RestoreFailed {
        program: String,
        status: String,
        stderr: String,
        input: String,
    },
    #[error("{program} failed ({status}): {stderr}")]
    SaveFailed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{program} did not finish within {}s and was killed", timeout.as_secs())]
    Timeout { program: String, timeout: Duration },
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl DataplaneError {
    /// True when the same write may succeed after a re-read: another writer held the lock or
    /// changed the table under us (a stale rule index makes a restore fail), or a child hung.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DataplaneError::Busy { .. }
                | DataplaneError::RestoreFailed { .. }
                | DataplaneError::Timeout { .. }
        )
    }
}

/// The seam between reconcile logic and the kernel. The real implementation spawns the iptables
/// and ipset tools; `fake::FakeDataplane` (unit tests only) keeps tables in memory.
pub trait Dataplane {
    /// `iptables-save -t TABLE` (or ip6tables) output.
    fn save(&self, family: Family, table: TableName) -> Result<String, DataplaneError>;
    /// The save output of every table hostfw writes, for one family; a table the kernel does
    /// not have is absent (it holds nothing of ours). The default saves table by table; the real
    /// dataplane reads all of them with one process.
    fn save_tables(&self, family: Family) -> Result<BTreeMap<TableName, String>, DataplaneError> {
        TableName::ALL
            .into_iter()
            .map(|table| Ok((table, self.save(family, table)?)))
            .collect()
    }
    /// Feed `input` to `iptables-restore --noflush` (one table, one transaction).
    fn restore(&self, family: Family, table: TableName, input: &str) -> Result<(), DataplaneError>;
    /// `ipset save` output restricted to hostfw's sets (names starting with `cali`).
    fn ipset_save(&self) -> Result<String, DataplaneError>;
    /// Feed `input` to `ipset restore -exist`.
    fn ipset_restore(&self, input: &str) -> Result<(), DataplaneError>;
    /// The backend in use.
    fn backend(&self) -> Backend;
    /// Whether this family can be programmed at all (tools present, kernel support).
    fn supports(&self, family: Family) -> bool;
    /// `iptables-save -c -t TABLE`: as `save`, with packet and byte counters (`hostfw status`).
    /// Implementations without counters return `save`'s output, whose counters read as zero.
    fn save_counters(&self, family: Family, table: TableName) -> Result<String, DataplaneError> {
        self.save(family, table)
    }
}

/// Keep only hostfw's sets (and their members) from `ipset save` output. Felix's set names all
/// start with `cali` (`cali40s:...`, `cali60s:...`); everything else belongs to someone else.
pub fn filter_ipset_save(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let verb = words.next();
        let name = words.next();
        if matches!(verb, Some("create") | Some("add")) && name.is_some_and(is_our_set) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn is_our_set(name: &str) -> bool {
    name.starts_with("cali")
}

/// Split a whole `iptables-save` (all tables) into one text per table hostfw writes. The
/// notice iptables-nft prints instead of a table it cannot show (`# Table `filter' is
/// incompatible, use 'nft' tool.`) goes with that table, so parsing it still refuses.
pub fn split_save(text: &str) -> BTreeMap<TableName, String> {
    let table_named = |name: &str| TableName::ALL.into_iter().find(|t| t.as_str() == name);
    let mut tables: BTreeMap<TableName, String> = BTreeMap::new();
    let mut current: Option<TableName> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('*') {
            current = table_named(name.trim());
        } else if line.starts_with('#') && line.contains("is incompatible") {
            let name = line.split('`').nth(1).and_then(|r| r.split('\'').next());
            if let Some(table) = name.and_then(table_named) {
                let text = tables.entry(table).or_default();
                text.push_str(line);
                text.push('\n');
            }
            continue;
        }
        if let Some(table) = current {
            let text = tables.entry(table).or_default();
            text.push_str(line);
            text.push('\n');
        }
        if line == "COMMIT" {
            current = None;
        }
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipset_filter_keeps_only_cali_sets() {
        let text = "create f2b-sshd hash:ip family inet hashsize 1024 maxelem 65536\n\
                    add f2b-sshd 203.0.113.9\n\
                    create cali40s:abc hash:net family inet hashsize 1024 maxelem 1048576\n\
                    add cali40s:abc 198.51.100.0/24\n\
                    create docker-cali hash:ip family inet hashsize 1024 maxelem 65536\n";
        assert_eq!(
            filter_ipset_save(text),
            "create cali40s:abc hash:net family inet hashsize 1024 maxelem 1048576\n\
             add cali40s:abc 198.51.100.0/24\n"
        );
    }

    #[test]
    fn split_save_keeps_our_tables_and_incompatibility_notices() {
        let text =
            "# Generated by iptables-nft-save v1.8.9\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n\
                    *mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j cali-PREROUTING\nCOMMIT\n\
                    # Table `filter' is incompatible, use 'nft' tool.\n\
                    # Completed on Sun Nov 22 00:12:08 2026\n";
        let tables = split_save(text);
        assert_eq!(
            tables.keys().copied().collect::<Vec<_>>(),
            [TableName::Mangle, TableName::Filter]
        );
        assert_eq!(
            tables[&TableName::Mangle],
            "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j cali-PREROUTING\nCOMMIT\n"
        );
        assert_eq!(
            tables[&TableName::Filter],
            "# Table `filter' is incompatible, use 'nft' tool.\n"
        );
    }

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        let busy = DataplaneError::Busy {
            program: "iptables-restore".into(),
            stderr: String::new(),
        };
        let denied = DataplaneError::PermissionDenied {
            program: "iptables-save".into(),
            stderr: String::new(),
        };
        let missing = DataplaneError::MissingBinary {
            program: "ipset".into(),
            package: "ipset",
        };
        assert!(busy.is_retryable());
        assert!(!denied.is_retryable());
        assert!(!missing.is_retryable());
        assert!(missing.to_string().contains("apt-get install ipset"));
    }
}
