//! Agent settings: flags (already merged with HOSTFW_* variables by clap) resolved into paths,
//! node name and backend choice. Reads the kernel hostname when no node name is given.

use crate::cli::{BackendArg, GlobalArgs};
use crate::model::BackendChoice;
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
