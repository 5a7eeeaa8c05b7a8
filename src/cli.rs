//! Command-line syntax (clap): global options and one subcommand per verb. Syntax only: nothing
//! here reads the host; `settings` turns the parsed flags into `Settings`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// hostfw: Calico-style host protection (HostEndpoint, GlobalNetworkPolicy, GlobalNetworkSet,
/// FelixConfiguration) for Linux hosts without Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "hostfw", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Policy directory.
    #[arg(
        short = 'd',
        long,
        global = true,
        env = "HOSTFW_POLICY_DIR",
        value_name = "DIR"
    )]
    pub policy_dir: Option<PathBuf>,
    /// This node's name, matched against HostEndpoint spec.node [default: kernel hostname].
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "HOSTFW_NODENAME",
        value_name = "NAME"
    )]
    pub node: Option<String>,
    /// iptables backend.
    #[arg(long, global = true, env = "HOSTFW_IPTABLES_BACKEND", value_enum)]
    pub backend: Option<BackendArg>,
    /// Runtime directory (status.json, lock file).
    #[arg(long, global = true, env = "HOSTFW_RUN_DIR", value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// State directory (last good policy set).
    #[arg(long, global = true, env = "HOSTFW_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace (RUST_LOG also works).
    #[arg(long, global = true, env = "HOSTFW_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Auto,
    Legacy,
    Nft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum FamilyArg {
    #[default]
    #[value(name = "4")]
    V4,
    #[value(name = "6")]
    V6,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate the policy directory (or the given files and directories).
    Check(CheckArgs),
    /// Show the resolved view for this node: endpoints, applicable policies, failsafes.
    Show(ShowArgs),
    /// Print the desired ruleset as iptables-restore input (or ipset restore input).
    Render(RenderArgs),
    /// Compare the desired ruleset with the kernel; exit 1 when changes are pending.
    Diff(DiffArgs),
    /// Reconcile the kernel with the policy directory once, then verify.
    Apply(ApplyArgs),
    /// Remove every chain, hook rule and ipset hostfw owns, and nothing else.
    Flush,
    /// Run the agent: apply, then follow policy, interface and kernel changes (systemd service).
    Run,
    /// Print the daemon's status and live per-policy packet/byte counters.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files or directories to check [default: the policy directory].
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// IP family to render.
    #[arg(long, value_enum, default_value_t)]
    pub family: FamilyArg,
    /// Print `ipset restore` input instead of iptables-restore input.
    #[arg(long)]
    pub ipsets: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Compute and print the plan without writing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}
