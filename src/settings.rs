//! Agent settings: flags (already merged with HOSTFW_* variables by clap) resolved into paths,
//! node name, backend choice, the daemon's lockout-guard mode and the policy source. Reads the
//! kernel hostname when no node name is given, and calicoctl's environment variables and
//! config file for the datastore.

use crate::cli::{BackendArg, DatastoreArg, GlobalArgs};
use crate::dataplane::Backend;
use crate::guard::DaemonMode;
use crate::model::BackendChoice;
use crate::source::etcd::config::{self, Datastore, DatastoreType, EtcdConfig};
use crate::source::Source;
use std::path::PathBuf;

pub const DEFAULT_POLICY_DIR: &str = "/etc/hostfw/policies.d";
pub const DEFAULT_RUN_DIR: &str = "/run/hostfw";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hostfw";

/// Everything a command needs to know about where things are and who this host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub policy_dir: PathBuf,
    pub node: String,
    /// None: not set on the command line or environment (FelixConfiguration may set it).
    pub backend: Option<BackendChoice>,
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
    /// What the daemon does with lockout-guard findings.
    pub lockout_guard: DaemonMode,
    /// Where policies come from.
    pub datastore: DatastoreSettings,
}

/// The datastore choice as resolved from flags, environment and calicoctl.cfg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreSettings {
    /// The choice, or why the settings make none (etcdv3 without endpoints, ...).
    pub resolved: Result<Datastore, String>,
    /// Worth a warning: a calicoctl.cfg that could not be used, a type hostfw does not serve.
    pub notes: Vec<String>,
}

impl Default for DatastoreSettings {
    /// The policy directory.
    fn default() -> Self {
        DatastoreSettings {
            resolved: Ok(Datastore::default()),
            notes: Vec::new(),
        }
    }
}

impl DatastoreSettings {
    fn from_args(args: &GlobalArgs) -> DatastoreSettings {
        let path = &args.calicoctl_config;
        let mut notes = Vec::new();
        let cfg = match std::fs::read_to_string(path) {
            Ok(text) => config::parse_calicoctl_cfg(&path.display().to_string(), &text)
                .unwrap_or_else(|e| {
                    notes.push(format!("ignoring calicoctl's configuration: {e}"));
                    Vec::new()
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                notes.push(format!("ignoring {}: {e}", path.display()));
                Vec::new()
            }
        };
        let flags = config::Flags {
            datastore_type: args.datastore_type.map(|t| match t {
                DatastoreArg::Directory => DatastoreType::Directory,
                DatastoreArg::Etcdv3 => DatastoreType::Etcdv3,
            }),
            endpoints: args.etcd_endpoints.clone(),
        };
        let resolved =
            config::resolve(&flags, &|k| std::env::var(k).ok(), &cfg).map(|(datastore, note)| {
                notes.extend(note);
                datastore
            });
        DatastoreSettings { resolved, notes }
    }
}

impl Settings {
    pub fn from_args(args: &GlobalArgs) -> Settings {
        let node = args.node.clone().unwrap_or_else(kernel_hostname);
        Settings {
            policy_dir: args
                .policy_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY_DIR)),
            node,
            backend: args.backend.map(|b| match b {
                BackendArg::Auto => BackendChoice::Auto,
                BackendArg::Legacy => BackendChoice::Legacy,
                BackendArg::Nft => BackendChoice::Nft,
            }),
            run_dir: args
                .run_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR)),
            state_dir: args
                .state_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            lockout_guard: DaemonMode::from_value(args.lockout_guard.as_deref()),
            datastore: DatastoreSettings::from_args(args),
        }
    }

    /// The configured policy source (the directory, or etcd), after logging the datastore
    /// notes; Err when the datastore settings are incomplete.
    pub fn policy_source(&self) -> Result<Box<dyn Source>, String> {
        for note in &self.datastore.notes {
            log::warn!("{note}");
        }
        let datastore = self.datastore.resolved.clone()?;
        Ok(match datastore.kind {
            DatastoreType::Directory => {
                Box::new(crate::source::directory::Directory::new(&self.policy_dir))
            }
            DatastoreType::Etcdv3 => Box::new(crate::source::etcd::Etcd::new(datastore.etcd)),
        })
    }

    /// Whether policies come from etcd.
    pub fn uses_etcd(&self) -> bool {
        matches!(&self.datastore.resolved, Ok(d) if d.kind == DatastoreType::Etcdv3)
    }

    /// How to reach etcd, whatever the datastore type (`datastore push` and `pull`).
    pub fn etcd_config(&self) -> Result<EtcdConfig, String> {
        let datastore = self.datastore.resolved.clone()?;
        config::check(&datastore.etcd)?;
        Ok(datastore.etcd)
    }

    /// The backend to use: the command line / environment first, then FelixConfiguration
    /// `iptablesBackend` (`felix`); `None` means detect.
    pub fn dataplane_backend(&self, felix: Option<BackendChoice>) -> Option<Backend> {
        match self.backend.or(felix)? {
            BackendChoice::Auto => None,
            BackendChoice::Legacy => Some(Backend::Legacy),
            BackendChoice::Nft => Some(Backend::Nft),
        }
    }

    pub fn lock_path(&self) -> PathBuf {
        self.run_dir.join("hostfw.lock")
    }

    pub fn status_path(&self) -> PathBuf {
        self.run_dir.join("status.json")
    }

    pub fn last_good_dir(&self) -> PathBuf {
        self.state_dir.join("last-good")
    }
}

/// The kernel hostname, Felix's default node name.
fn kernel_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(backend: Option<BackendChoice>) -> Settings {
        Settings {
            policy_dir: PathBuf::from("/nonexistent"),
            node: "n".into(),
            backend,
            run_dir: PathBuf::from("/nonexistent"),
            state_dir: PathBuf::from("/nonexistent"),
            lockout_guard: DaemonMode::Warn,
            datastore: DatastoreSettings::default(),
        }
    }

    #[test]
    fn command_line_backend_beats_felix_configuration() {
        use BackendChoice::*;
        let cases = [
            (None, None, None),
            (None, Some(Auto), None),
            (None, Some(Nft), Some(Backend::Nft)),
            (Some(Legacy), Some(Nft), Some(Backend::Legacy)),
            // An explicit `--backend auto` means detect, whatever FelixConfiguration says.
            (Some(Auto), Some(Legacy), None),
            (Some(Nft), None, Some(Backend::Nft)),
        ];
        for (flag, felix, expected) in cases {
            assert_eq!(
                settings(flag).dataplane_backend(felix),
                expected,
                "flag {flag:?}, felix {felix:?}"
            );
        }
    }

    #[test]
    fn lockout_guard_flag() {
        use clap::Parser;
        let cases = [
            ("refuse", DaemonMode::Refuse),
            ("REFUSE", DaemonMode::Refuse),
            ("warn", DaemonMode::Warn),
            ("anything else", DaemonMode::Sessions),
        ];
        for (value, want) in cases {
            let cli = crate::cli::Cli::try_parse_from(["hostfw", "--lockout-guard", value, "run"])
                .expect("parses");
            assert_eq!(
                Settings::from_args(&cli.global).lockout_guard,
                want,
                "{value}"
            );
        }
    }
}
