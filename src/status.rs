//! `status.json`: what the daemon reports about itself (state, last apply, diagnostics, drift
//! repairs), written atomically (temp file, fsync, rename) and read back by `hostfw status`.
//! Owns the file format (replaced through `fsutil::write_atomic`); knows nothing of how the values are produced.

use crate::diag::Diagnostic;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The daemon's overall health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Started, first apply not finished yet.
    Starting,
    /// The policy directory is valid and its rules are in force.
    Ok,
    /// The policy directory is invalid (or missing): the last good rules stay in force, or the
    /// kernel was left as it was.
    Degraded,
    /// Writing to the kernel keeps failing; the daemon retries and then exits.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ok => "ok",
            State::Degraded => "degraded",
            State::Failed => "failed",
        }
    }
}

/// Where the rules in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyOrigin {
    /// The policy directory.
    Directory,
    /// The etcd datastore (`--datastore-type etcdv3`).
    Datastore,
    /// The saved last good set (applied at boot because the directory was invalid).
    LastGood,
}

/// The policy set in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// Counts the distinct policy sets applied since the daemon started (1 = the first).
    pub generation: u64,
    /// sha256 over the files' names and contents, hex.
    pub source_hash: String,
    pub origin: PolicyOrigin,
}

/// The last reconcile that was asked to bring the kernel to a new desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRecord {
    /// RFC 3339, UTC.
    pub time: String,
    pub duration_ms: u64,
    pub chains_written: usize,
    pub ok: bool,
}

/// The policy datastore as the daemon last saw it (etcd; absent for the policy directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datastore {
    /// `etcdv3`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `connecting`, `connected`, `disconnected` or `paused` (ClusterInformation
    /// `datastoreReady: false`: the rules in force stay, nothing new is applied).
    pub state: String,
    pub endpoints: Vec<String>,
    /// The datastore revision the daemon's copy reflects.
    pub revision: i64,
    /// RFC 3339: when the copy last changed.
    pub last_event: Option<String>,
    /// The last connection error, until a reconnection succeeds.
    pub error: Option<String>,
}

/// Everything in `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    pub node: String,
    /// `legacy` or `nft`, once known.
    pub backend: Option<String>,
    pub pid: u32,
    /// RFC 3339, UTC.
    pub started: String,
    /// RFC 3339, UTC: when this file was last written.
    pub updated: String,
    pub policy: Option<PolicyInfo>,
    /// GlobalNetworkPolicies in force on this node, by name.
    #[serde(default)]
    pub policies: Vec<String>,
    pub last_apply: Option<ApplyRecord>,
    /// The current diagnostics of the policy directory (errors make it invalid; warnings too).
    pub diagnostics: Vec<Diagnostic>,
    /// Reconciles that found the kernel changed behind our back and rewrote it.
    pub drift_repairs: u64,
    /// RFC 3339 time of the last drift repair.
    pub last_repair: Option<String>,
    pub last_error: Option<String>,
    /// Foreign jumps (fail2ban, CrowdSec, sshguard, admin chains) that hostfw's inserted hooks
    /// precede in the kernel as the last reconcile verified it, one warning with its remedy
    /// each (`ruleset::plan::Overtaken`).
    #[serde(default)]
    pub overtaken: Vec<String>,
    /// SIGHUP reloads handled, counted once the reload's apply (or refusal) is recorded in this
    /// file: systemd/hostfw-reload waits for it to pass the value it saw before signalling.
    #[serde(default)]
    pub reloads: u64,
    /// Where the policies come from, when that is a datastore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<Datastore>,
}

impl Status {
    /// A fresh status for a daemon starting now.
    pub fn starting(node: &str, pid: u32, now: SystemTime) -> Status {
        let started = rfc3339(now);
        Status {
            state: State::Starting,
            node: node.to_string(),
            backend: None,
            pid,
            started: started.clone(),
            updated: started,
            policy: None,
            policies: Vec::new(),
            last_apply: None,
            diagnostics: Vec::new(),
            drift_repairs: 0,
            last_repair: None,
            last_error: None,
            overtaken: Vec::new(),
            reloads: 0,
            datastore: None,
        }
    }

    /// One line for logs and systemd's STATUS=.
    pub fn summary(&self) -> String {
        let errors = self.diagnostics.iter().filter(|d| d.is_error()).count();
        let mut s = self.state.as_str().to_string();
        if let Some(p) = &self.policy {
            let hash = p.source_hash.get(..12).unwrap_or(&p.source_hash);
            s.push_str(&format!(": policy generation {} ({hash})", p.generation));
            if p.origin == PolicyOrigin::LastGood {
                s.push_str(" from last good set");
            }
        } else {
            s.push_str(": no policy applied");
        }
        if errors > 0 {
            s.push_str(&format!(", {errors} error(s) in policy directory"));
        }
        if self.drift_repairs > 0 {
            s.push_str(&format!(", {} drift repair(s)", self.drift_repairs));
        }
        if let Some(d) = &self.datastore {
            if d.state != "connected" {
                s.push_str(&format!(", datastore {}", d.state));
            }
        }
        if !self.overtaken.is_empty() {
            s.push_str(&format!(
                ", {} overtaken foreign jump(s)",
                self.overtaken.len()
            ));
        }
        if let Some(e) = &self.last_error {
            let first = e.lines().next().unwrap_or_default();
            s.push_str(&format!(", last error: {first}"));
        }
        s
    }
}

/// `time` as RFC 3339 in UTC with millisecond precision.
pub fn rfc3339(time: SystemTime) -> String {
    match jiff::Timestamp::try_from(time) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => String::from("1970-01-01T00:00:00.000Z"),
    }
}

/// Milliseconds of a duration, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Write `status` to `path` atomically: a reader sees the old file or the new one, never a mix.
pub fn write(path: &Path, status: &Status) -> io::Result<()> {
    let mut text = serde_json::to_string_pretty(status).map_err(io::Error::other)?;
    text.push('\n');
    crate::fsutil::write_atomic(path, text.as_bytes())
}

/// Read and parse a status file.
pub fn read(path: &Path) -> Result<Status, ReadError> {
    let text = fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ReadError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Why a status file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a hostfw status file: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl ReadError {
    /// True when the file does not exist (the daemon never ran with this run directory).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// True when the caller may not read the file (it is root's, mode 0600).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Severity;

    fn sample() -> Status {
        let mut s = Status::starting("host-a", 4242, SystemTime::UNIX_EPOCH);
        s.state = State::Degraded;
        s.backend = Some("legacy".into());
        s.policy = Some(PolicyInfo {
            generation: 3,
            source_hash: "0123456789abcdef".into(),
            origin: PolicyOrigin::Directory,
        });
        s.diagnostics = vec![Diagnostic {
            file: "a.yaml".into(),
            line: 2,
            column: 1,
            severity: Severity::Error,
            kind: Some("HostEndpoint".into()),
            name: Some("h".into()),
            field: Some("spec.node".into()),
            message: "is required".into(),
        }];
        s.drift_repairs = 2;
        s
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let s = sample();
        write(&path, &s).unwrap();
        assert_eq!(read(&path).unwrap(), s);
        // The temp file is gone: only the status file remains.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("status.json")]);
    }

    #[test]
    fn rewrite_replaces_the_inode() {
        // Atomic replacement means a new inode: a reader holding the old file keeps a complete
        // old document instead of seeing a truncated one.
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        write(&path, &sample()).unwrap();
        let before = fs::metadata(&path).unwrap().ino();
        let held = fs::File::open(&path).unwrap();
        let mut next = sample();
        next.drift_repairs = 3;
        write(&path, &next).unwrap();
        assert_ne!(fs::metadata(&path).unwrap().ino(), before);
        let old: Status = serde_json::from_reader(held).unwrap();
        assert_eq!(old.drift_repairs, 2);
        assert_eq!(read(&path).unwrap().drift_repairs, 3);
    }

    #[test]
    fn json_uses_documented_names() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["state"], "degraded");
        assert_eq!(v["policy"]["origin"], "directory");
        assert_eq!(v["diagnostics"][0]["severity"], "error");
        assert_eq!(v["started"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(&dir.path().join("status.json")).unwrap_err();
        assert!(err.is_not_found());
    }

    #[test]
    fn summary_names_state_generation_and_errors() {
        assert_eq!(
            sample().summary(),
            "degraded: policy generation 3 (0123456789ab), 1 error(s) in policy directory, 2 drift repair(s)"
        );
    }
}
