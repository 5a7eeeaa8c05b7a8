//! Agent settings: flags (already merged with HOSTFW_* variables by clap) resolved into paths,
//! node name, backend choice and the daemon's lockout-guard mode. Reads the kernel hostname
//! when no node name is given.

use crate::cli::{BackendArg, GlobalArgs};
use crate::dataplane::Backend;
use crate::guard::DaemonMode;
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
    /// What the daemon does with lockout-guard findings.
    pub lockout_guard: DaemonMode,
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
        }
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
