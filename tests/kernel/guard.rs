//! Lockout guard: synthetic SSH sessions against the rulesets `desired::compute` renders (pure),
//! the daemon's gate on those findings, and the CLI in a network namespace: `apply` refuses
//! with a message naming the policy that would drop the session from `SSH_CONNECTION`, applies
//! with `--force`; `check` only warns.

use crate::netns;

use hostfw::desired::{self, Families, Options};
use hostfw::explain::{Decision, RuleVerdict};
use hostfw::finding::{Finding, FindingKind};
use hostfw::guard::{self, parse_ssh_connection, Observed, SshSession};
use hostfw::model::PolicySet;
use hostfw::policy::load_sources;
use hostfw::resolve::HostInterfaces;
use hostfw::source::NamedText;
use netns::*;

const NODE: &str = "hfw-guard";

fn hep() -> String {
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: h-eth0\n  \
         labels: {{role: admin}}\nspec:\n  interfaceName: eth0\n  node: {NODE}\n"
    )
}

const NO_FAILSAFE: &str = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\n\
    metadata: {name: default}\nspec:\n  failsafeInboundHostPorts: []\n---\n";

/// No failsafes and one policy admitting only TCP 10250: SSH is unreachable from anywhere.
fn kubelet_only() -> String {
    format!(
        "{NO_FAILSAFE}apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
         metadata: {{name: kubelet-only}}\nspec:\n  selector: all()\n  ingress:\n  \
         - {{action: Allow, protocol: TCP, destination: {{ports: [10250]}}}}\n{}",
        hep()
    )
}

fn interfaces() -> HostInterfaces {
    let mut i = HostInterfaces::new();
    i.insert(
        "eth0".into(),
        vec![HOST4.parse().unwrap(), HOST6.parse().unwrap()],
    );
    i
}

fn set(yaml: &str) -> PolicySet {
    let loaded = load_sources(&[NamedText {
        name: "t.yaml".into(),
        text: yaml.into(),
    }]);
    loaded
        .set
        .unwrap_or_else(|| panic!("invalid: {:?}", loaded.diagnostics))
}

/// The guard's findings, as every command and the daemon get them.
fn findings(yaml: &str, sessions: &[SshSession]) -> Vec<Finding> {
    let observed = Observed::from_sessions(sessions.to_vec());
    let options = Options {
        families: Families::Enabled,
        guard: Some(&observed),
    };
    let d = desired::compute(&set(yaml), NODE, &interfaces(), options).expect("render");
    d.guard_findings().cloned().collect()
}

fn admin() -> SshSession {
    parse_ssh_connection(&format!("{PEER4} 50022 {HOST4} 22")).unwrap()
}

const DENY_SSH: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-ssh}
spec:
  selector: "role == 'admin'"
  order: 1
  ingress:
  - {action: Deny, protocol: TCP, source: {nets: ["198.51.100.0/24"]}, destination: {ports: [22]}}
  - {action: Allow, protocol: TCP, destination: {ports: [22]}}
"#;

#[test]
fn denied_admin_is_a_lockout_naming_the_policy() {
    let f = findings(&format!("{NO_FAILSAFE}{DENY_SSH}{}", hep()), &[admin()]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, FindingKind::Lockout);
    assert!(f[0].message.contains("new login"), "{}", f[0].message);
    assert!(f[0].message.contains("deny-ssh"), "{}", f[0].message);
    assert_eq!(
        f[0].decision,
        Some(Decision::Policy {
            policy: "deny-ssh".into(),
            tier: "default".into(),
            direction: "ingress".into(),
            rule: Some(0),
            action: RuleVerdict::Deny,
        })
    );
}

#[test]
fn failsafe_ssh_protects_the_admin() {
    // Same policy, default failsafe ports: tcp 22 is accepted before any policy.
    assert!(findings(&format!("{DENY_SSH}{}", hep()), &[admin()]).is_empty());
}

#[test]
fn admin_outside_the_allowed_net_but_ssh_reachable_elsewhere() {
    let yaml = format!(
        "{NO_FAILSAFE}apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
         metadata: {{name: ssh-from-jump}}\nspec:\n  selector: all()\n  ingress:\n  \
         - {{action: Allow, protocol: TCP, source: {{nets: [\"203.0.113.0/24\"]}}, destination: {{ports: [22]}}}}\n{}",
        hep()
    );
    let f = findings(&yaml, &[admin()]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, FindingKind::Lockout);
    assert!(matches!(f[0].decision, Some(Decision::EndOfTier { .. })));
    // Without a session nothing is locked out: 203.0.113.0/24 can still reach SSH.
    assert!(findings(&yaml, &[]).is_empty());
}

#[test]
fn no_ssh_anywhere_is_unreachable() {
    let yaml = kubelet_only();
    let f = findings(&yaml, &[]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, FindingKind::Unreachable);
    assert!(f[0].message.contains("tcp port 22"), "{}", f[0].message);
}

#[test]
fn untracked_deny_drops_the_established_session() {
    // Failsafe ports would accept tcp/22 in raw before the untracked policy: remove them.
    let yaml = format!(
        "{NO_FAILSAFE}apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
         metadata: {{name: raw-block}}\nspec:\n  selector: all()\n  doNotTrack: true\n  \
         applyOnForward: true\n  ingress:\n  \
         - {{action: Deny, protocol: TCP, source: {{nets: [\"198.51.100.2/32\"]}}}}\n{}",
        hep()
    );
    let f = findings(&yaml, &[admin()]);
    // Also unreachable (no normal policy lets anything in), beside the lockout itself.
    let kinds: Vec<FindingKind> = f.iter().map(|x| x.kind).collect();
    assert_eq!(
        kinds,
        vec![FindingKind::Lockout, FindingKind::Unreachable],
        "{f:?}"
    );
    assert!(
        f[0].message.contains("its packets would be dropped"),
        "{}",
        f[0].message
    );
    assert!(f[0].message.contains("raw-block"), "{}", f[0].message);
}

fn run_env(
    ns: &Netns,
    work: &Workdir,
    backend: &str,
    ssh: Option<&str>,
    args: &[&str],
) -> HostfwRun {
    let mut cmd = hostfw_command(ns, work, NODE, backend, args);
    // The guard reads the caller's SSH session from the environment: only the one given counts.
    cmd.env_remove("SSH_CONNECTION");
    if let Some(s) = ssh {
        cmd.env("SSH_CONNECTION", s);
    }
    run_hostfw(cmd)
}

fn cli_refuses_then_forces(backend: &'static str) {
    let pair = Pair::new(&format!("grd-{backend}"));
    let work = Workdir::new();
    work.write_policies(&format!("{NO_FAILSAFE}{DENY_SSH}{}", hep()));
    let ssh = format!("{PEER4} 50022 {HOST4} 22");

    let check = run_env(&pair.host, &work, backend, Some(&ssh), &["check"]);
    assert_eq!(check.code, 0, "check only warns: {check:?}");
    assert!(
        check.stderr.contains("warning: lockout guard") && check.stderr.contains("deny-ssh"),
        "{check:?}"
    );

    let refused = run_env(&pair.host, &work, backend, Some(&ssh), &["apply"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("deny-ssh"), "{refused:?}");
    assert!(refused.stderr.contains("refusing to apply"), "{refused:?}");
    let tool = format!("iptables-{backend}-save");
    assert!(
        !pair.host.must(&[&tool]).contains("cali-"),
        "nothing may be applied when the guard refuses"
    );

    // --force applies despite the finding (and says so).
    let forced = run_env(
        &pair.host,
        &work,
        backend,
        Some(&ssh),
        &["apply", "--force"],
    );
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(forced.stderr.contains("--force"), "{forced:?}");
    assert!(pair.host.must(&[&tool]).contains("cali-INPUT"));
}

mod cli {
    #[test]
    fn legacy() {
        if super::kernel_tests_enabled() {
            super::cli_refuses_then_forces("legacy");
        }
    }
    #[test]
    fn nft() {
        if super::kernel_tests_enabled() {
            super::cli_refuses_then_forces("nft");
        }
    }
}

#[test]
fn daemon_warns_by_default_and_refuses_on_request() {
    let yaml = kubelet_only();
    let found = findings(&yaml, &[]);
    let gate = |mode| guard::daemon_gate(&found, mode, "policies.d");
    assert_eq!(gate(guard::DaemonMode::Warn), vec![]);
    let refused = gate(guard::DaemonMode::Refuse);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].is_error(), "{refused:?}");
    assert_eq!(refused[0].file, "policies.d");
    assert!(
        refused[0].message.contains("no inbound SSH"),
        "{}",
        refused[0].message
    );
    assert_eq!(
        guard::DaemonMode::from_value(Some("refuse")),
        guard::DaemonMode::Refuse
    );
}

/// Resolution warnings pass the gate untouched: only guard verdicts can refuse a set.
#[test]
fn daemon_gate_ignores_resolution_warnings() {
    let warning = Finding::warning("no HostEndpoint has spec.node \"x\"");
    assert_eq!(
        guard::daemon_gate([&warning], guard::DaemonMode::Refuse, "policies.d"),
        vec![]
    );
}
