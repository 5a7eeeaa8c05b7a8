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
    /// What the daemon does with the lockout guard's findings: `sessions` (the default) keeps
    /// the current rules instead of an edit that would cut off an SSH session it can see, and
    /// logs the other findings; `warn` logs every finding and applies; `refuse` keeps the current rules on any
    /// finding. Any other value means the default.
    #[arg(long, global = true, env = "HOSTFW_LOCKOUT_GUARD", value_name = "MODE")]
    pub lockout_guard: Option<String>,
    /// Where policies come from: the policy directory, or Calico's etcd v3 datastore
    /// [default: calicoctl's DATASTORE_TYPE or calicoctl.cfg when they say etcdv3, else directory].
    #[arg(
        long,
        global = true,
        env = "HOSTFW_DATASTORE_TYPE",
        value_enum,
        value_name = "TYPE"
    )]
    pub datastore_type: Option<DatastoreArg>,
    /// etcd URLs, comma-separated (as ETCD_ENDPOINTS; TLS and authentication from ETCD_CA_CERT_FILE,
    /// ETCD_CERT_FILE, ETCD_KEY_FILE, ETCD_USERNAME, ETCD_PASSWORD or calicoctl.cfg).
    #[arg(long, global = true, value_name = "URL[,URL...]")]
    pub etcd_endpoints: Option<String>,
    /// calicoctl's configuration file (CalicoAPIConfig), read for the datastore settings when it
    /// exists.
    #[arg(
        long,
        global = true,
        env = "HOSTFW_CALICOCTL_CONFIG",
        value_name = "FILE",
        default_value = crate::source::etcd::config::CALICOCTL_CFG
    )]
    pub calicoctl_config: PathBuf,
    /// Log level: error, warn, info, debug or trace (RUST_LOG also works).
    #[arg(long, global = true, env = "HOSTFW_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatastoreArg {
    Directory,
    Etcdv3,
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
    /// Simulate one packet through the rendered ruleset: the verdict, the path, and the policy
    /// rule, failsafe entry or default that decided it. Needs no root.
    Explain(ExplainArgs),
    /// Keep the rules of a pending `apply --confirm` and cancel its automatic rollback.
    Confirm,
    /// Write policy files to Calico's etcd datastore, or export it to files.
    #[command(subcommand)]
    Datastore(DatastoreCommand),
    /// Internal: the detached watcher `apply --confirm` leaves behind.
    #[command(name = "confirm-watch", hide = true)]
    ConfirmWatch(ConfirmWatchArgs),
}

#[derive(Debug, Subcommand)]
pub enum DatastoreCommand {
    /// Validate the files (with what they leave in etcd), then write them as calicoctl's apply
    /// does: create, or update guarded by the stored revision; nothing on any error.
    Push(PushArgs),
    /// Export every resource to one YAML file each in DIR (empty or absent).
    Pull(PullArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Files or directories to push.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Also delete stored resources of the kinds hostfw manages that the files do not name
    /// (never ClusterInformation or Calico's default, kube-admin and kube-baseline tiers).
    #[arg(long)]
    pub prune: bool,
    /// Split the push into transactions of at most N writes (for a server whose --max-txn-ops
    /// refuses it whole). Hosts may then see part of the set between transactions: tiers, sets
    /// and profiles are written first, then policies, then host endpoints, deletions last.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_ops_per_txn: Option<u32>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The directory to write (must be empty or absent).
    pub dir: PathBuf,
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
    /// Restore the previous state automatically unless `hostfw confirm` runs within SECS
    /// seconds (anti-lockout for remote edits).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub confirm: Option<u64>,
    /// Apply even when the lockout guard finds that the new rules would cut off the SSH
    /// session applying them (or all inbound SSH).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    Ingress,
    Egress,
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum StateArg {
    #[default]
    New,
    Established,
    Invalid,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Interface the packet arrives on (ingress, forward) or leaves by (egress).
    #[arg(long, value_name = "IF")]
    pub iface: String,
    /// Ingress: to this host; egress: from this host; forward: through it.
    #[arg(long, value_enum)]
    pub direction: DirectionArg,
    /// Forward only: the interface the packet leaves by.
    #[arg(long, value_name = "IF")]
    pub out_iface: Option<String>,
    /// Source address of the packet.
    #[arg(long, value_name = "IP")]
    pub src: std::net::IpAddr,
    /// Destination address of the packet.
    #[arg(long, value_name = "IP")]
    pub dst: std::net::IpAddr,
    /// tcp, udp, icmp, icmpv6, sctp, or a protocol number.
    #[arg(long, value_name = "PROTO")]
    pub proto: String,
    /// Source port [default: 49152 for port protocols].
    #[arg(long, value_name = "N")]
    pub sport: Option<u16>,
    /// Destination port (required for port protocols).
    #[arg(long, value_name = "N")]
    pub dport: Option<u16>,
    /// ICMP type [default: echo request, 8 or 128].
    #[arg(long, value_name = "T")]
    pub icmp_type: Option<u8>,
    /// ICMP code [default: 0].
    #[arg(long, value_name = "C", requires = "icmp_type")]
    pub icmp_code: Option<u8>,
    /// Conntrack state of the packet.
    #[arg(long, value_enum, default_value_t)]
    pub state: StateArg,
    /// The flow was DNATed (matches `--ctstate DNAT`).
    #[arg(long)]
    pub dnat: bool,
    /// Evaluate the kernel's current tables (every rule, foreign ones included, and the kernel
    /// chains' policies) instead of the rendered ruleset. Needs root.
    #[arg(long)]
    pub live: bool,
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ConfirmWatchArgs {
    /// The pending confirmation this watcher guards.
    #[arg(long)]
    pub token: String,
}
