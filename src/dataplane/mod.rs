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
pub use exec::{cancel_children, while_waiting};
pub use real::{probe, RealDataplane};

use crate::ruleset::ipset::is_owned_set;
use crate::ruleset::restore::RestoreScript;
use crate::ruleset::{Family, TableName};
use std::collections::BTreeSet;
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
    pub const ALL: [Backend; 2] = [Backend::Legacy, Backend::Nft];

    /// `legacy` / `nft`: the tools' infix (`iptables-nft-save`) and how status.json spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Legacy => "legacy",
            Backend::Nft => "nft",
        }
    }

    /// The backend `as_str` spells `name`.
    pub fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.as_str() == name)
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
    #[error(
        "{program} failed ({status}): {stderr}{}\n--- input ---\n{input}--- end of input ---",
        failing_line(stderr, input)
    )]
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
    #[error("{program} was killed because hostfw is stopping (SIGTERM); a restore commits all of its transaction or none")]
    Cancelled { program: String },
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
    /// changed the table under us (a stale rule index makes a restore fail). A child that hung
    /// until its deadline is not retried at once: five more deadlines would hold the xtables
    /// lock for many minutes; the daemon retries on its own, later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DataplaneError::Busy { .. } | DataplaneError::RestoreFailed { .. }
        )
    }
}

/// `\nfailing line N of the input: TEXT` when the tool named the line it refused
/// (`Error occurred at line: N`, or `iptables-restore: line N failed…`), else nothing: the
/// headline then says what failed, not just a notice printed before it.
fn failing_line(stderr: &str, input: &str) -> String {
    let number = stderr.lines().find_map(|l| {
        let after = l
            .split_once("Error occurred at line: ")
            .or_else(|| l.split_once(": line "))?
            .1;
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        after[..digits].parse::<usize>().ok()
    });
    match number.and_then(|n| Some((n, input.lines().nth(n.checked_sub(1)?)?))) {
        Some((n, line)) => format!("\nfailing line {n} of the input: {line}"),
        None => String::new(),
    }
}

/// The seam between reconcile logic and the kernel. The real implementation spawns the iptables
/// and ipset tools; `fake::FakeDataplane` (unit tests only) keeps tables in memory. `Sync`:
/// the families are read from parallel threads.
pub trait Dataplane: Sync {
    /// `iptables-save -t TABLE` (or ip6tables) output.
    fn save(&self, family: Family, table: TableName) -> Result<String, DataplaneError>;
    /// The save output of the tables of one family, handed to `line` a line at a time (without
    /// the line break) as the save tool prints it: a read keeps only part of each table's text
    /// (`ruleset::save::SavedTables` picks hostfw's tables from it), and at 10,000 policies the
    /// whole is hundreds of megabytes. A table the kernel does not have may be absent (it holds
    /// nothing of ours). The default saves each of `TableName::OWNED` in turn; the real
    /// dataplane reads every table with one process. On an error the lines given so far are
    /// not the whole.
    fn save_tables(
        &self,
        family: Family,
        line: &mut dyn FnMut(&str),
    ) -> Result<(), DataplaneError> {
        for table in TableName::OWNED {
            self.save(family, table)?.lines().for_each(&mut *line);
        }
        Ok(())
    }
    /// Only `chains` of one table, in `iptables-save` form (`*table`, a `:chain` line and the
    /// `-A` rules of each), when the backend reads a few chains much faster than the whole
    /// table; `None` when it does not (then the caller saves the table). iptables-nft lists one
    /// chain of a 50,000-rule table in ~20 ms against ~1.7 s for the table; legacy fetches the
    /// whole table from the kernel either way (~0.4 s against ~0.6 s), so it answers `None`.
    fn save_chains(
        &self,
        _family: Family,
        _table: TableName,
        _chains: &[&str],
    ) -> Result<Option<String>, DataplaneError> {
        Ok(None)
    }
    /// Feed `input` to `iptables-restore --noflush` (one table, one transaction).
    fn restore(&self, family: Family, table: TableName, input: &str) -> Result<(), DataplaneError>;
    /// `restore` of a plan's script. The real dataplane feeds it to the tool as it is written
    /// out, never whole (at 1,000 policies a first apply's text is ~8 MB a family); the
    /// default writes out the text and restores that.
    fn restore_script(
        &self,
        family: Family,
        table: TableName,
        script: &RestoreScript,
    ) -> Result<(), DataplaneError> {
        self.restore(family, table, &script.text())
    }
    /// `ipset save` output restricted to hostfw's sets (`ruleset::ipset::is_owned_set`).
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
    /// The `cali` sets the other iptables backend's rules name (`--match-set`). Both backends
    /// share the kernel's ipsets, so a flush of this backend must leave those (the kernel
    /// refuses to destroy a set in use). Empty when the other backend's tools are absent.
    fn sets_used_by_other_backend(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }
}

/// The `cali` set names `--match-set` mentions in `iptables-save` text.
pub fn match_set_names(save_text: &str) -> BTreeSet<String> {
    save_text
        .split("--match-set ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| is_owned_set(name))
        .map(str::to_string)
        .collect()
}

/// Keep only hostfw's sets (and their members) from `ipset save` output: the exact name shapes
/// `ruleset::ipset::is_owned_set` accepts; everything else belongs to someone else.
pub fn filter_ipset_save(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let verb = words.next();
        let name = words.next();
        if matches!(verb, Some("create") | Some("add")) && name.is_some_and(is_owned_set) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `iptables -S CHAIN` output (`-P CHAIN POLICY` or `-N CHAIN`, then `-A` rules, the same
/// rule text as `iptables-save` prints) appended to `out` in `iptables-save` form.
pub(crate) fn listed_as_saved(listed: &str, out: &mut String) {
    for line in listed.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("-N"), Some(chain), None) => out.push_str(&format!(":{chain} - [0:0]\n")),
            (Some("-P"), Some(chain), Some(policy)) => {
                out.push_str(&format!(":{chain} {policy} [0:0]\n"))
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipset_filter_keeps_only_our_set_shapes() {
        let ours = "cali40s:AAAAAAAAAAAAAAAAAAAAAAA";
        let text = format!(
            "create f2b-sshd hash:ip family inet hashsize 1024 maxelem 65536\n\
             add f2b-sshd 203.0.113.9\n\
             create {ours} hash:net family inet hashsize 1024 maxelem 1048576\n\
             add {ours} 198.51.100.0/24\n\
             create cali40-office hash:net family inet hashsize 1024 maxelem 65536\n\
             add cali40-office 192.0.2.0/24\n\
             create docker-cali hash:ip family inet hashsize 1024 maxelem 65536\n"
        );
        assert_eq!(
            filter_ipset_save(&text),
            format!(
                "create {ours} hash:net family inet hashsize 1024 maxelem 1048576\n\
                 add {ours} 198.51.100.0/24\n"
            )
        );
    }

    #[test]
    fn match_set_names_lists_our_sets_only() {
        let selector_set = "cali40s:AAAAAAAAAAAAAAAAAAAAAAA";
        let text = format!(
            "*filter\n-A cali-pi-x -m set --match-set {selector_set} src -j MARK\n\
             -A INPUT -m set ! --match-set f2b-sshd src -j DROP\n\
             -A INPUT -m set --match-set cali40-office src -j ACCEPT\n\
             -A cali-POSTROUTING -m set --match-set cali40dscp-src-net src -m set ! \
             --match-set cali40this-host dst -j cali-egress-dscp\nCOMMIT\n"
        );
        assert_eq!(
            match_set_names(&text).into_iter().collect::<Vec<_>>(),
            ["cali40dscp-src-net", selector_set, "cali40this-host"]
        );
    }

    #[test]
    fn listed_chains_read_as_saved() {
        let mut out = String::from("*filter\n");
        listed_as_saved("-P INPUT ACCEPT\n-A INPUT -j cali-INPUT\n", &mut out);
        listed_as_saved(
            "-N cali-INPUT\n-A cali-INPUT -m comment --comment \"a\nb\" -j DROP\n",
            &mut out,
        );
        assert_eq!(
            out,
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j cali-INPUT\n:cali-INPUT - [0:0]\n\
             -A cali-INPUT -m comment --comment \"a\nb\" -j DROP\n"
        );
    }

    #[test]
    fn a_failed_restore_names_the_line_it_refused() {
        let input = "*filter\n:cali-x - [0:0]\n-X cali-pi-old\nCOMMIT\n";
        for stderr in [
            "iptables-restore v1.8.9 (legacy): Couldn't delete chain\nError occurred at line: 3",
            "iptables-restore: line 3 failed",
            "iptables-nft-restore: line 3 failed: No chain/target/match by that name.",
        ] {
            let err = DataplaneError::RestoreFailed {
                program: "iptables-restore".into(),
                status: "exit status 1".into(),
                stderr: stderr.into(),
                input: input.into(),
            };
            assert!(
                err.to_string()
                    .contains("failing line 3 of the input: -X cali-pi-old\n"),
                "{err}"
            );
        }
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
