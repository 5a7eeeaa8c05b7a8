//! Lockout attacks on the guard (docs/design.md, "Lockout guard"): sshd listening on another
//! port than 22 while the caller has no `SSH_CONNECTION` (sudo strips it; the daemon never has
//! one). A stand-in sshd (perl started through a symlink named `sshd`, so its process name is
//! `sshd`) listens inside the host namespace.

use crate::netns;

use netns::*;
use std::process::{Child, Command, Stdio};

/// A process named `sshd` listening on `[::]:port` inside `ns`; killed on drop.
struct FakeSshd {
    child: Child,
    _dir: tempfile::TempDir,
}

impl FakeSshd {
    fn start(ns: &Netns, port: u16) -> FakeSshd {
        let dir = tempfile::tempdir().expect("tempdir");
        let sshd = dir.path().join("sshd");
        std::os::unix::fs::symlink(crate::attacks_dataplane::real("perl"), &sshd).expect("symlink");
        let script = format!(
            "use Socket; socket(my $s, AF_INET6, SOCK_STREAM, 0) or die; \
             bind($s, pack_sockaddr_in6({port}, chr(0) x 16)) or die; listen($s, 5) or die; \
             $| = 1; print \"ready\\n\"; sleep 600;"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(&sshd)
            .args(["-e", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the stand-in sshd");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        assert_eq!(line.trim(), "ready");
        FakeSshd { child, _dir: dir }
    }
}

impl Drop for FakeSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Attack: sshd listens on 2222 and the policy allows only 8080; the failsafes keep 22 open,
/// which helps nobody. Without `SSH_CONNECTION` the guard used to test 22 only and let the set
/// through; it now tests sshd's real port and refuses.
fn ssh_on_another_port_is_guarded_scenario() {
    let s = Scenario::new(
        "sshport",
        "legacy",
        &format!(
            "{}{}",
            allow_ports_policy("web", "8080"),
            scenario_hep("host-eth0", Some("eth0"), "{role: web}")
        ),
    );
    let _sshd = FakeSshd::start(&s.pair.host, 2222);
    let mut cmd = hostfw_command(&s.pair.host, &s.work, SCENARIO_NODE, "legacy", &["apply"]);
    cmd.env_remove("SSH_CONNECTION");
    let run = run_hostfw(cmd);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("tcp port 2222") && run.stderr.contains("refusing to apply"),
        "{run:?}"
    );
    let filter = save(&s.pair.host, "legacy", false, "filter", false);
    assert!(
        !filter.contains("cali-"),
        "applied despite the guard: {filter}"
    );
}

#[test]
fn ssh_on_another_port_is_guarded() {
    if kernel_tests_enabled() {
        ssh_on_another_port_is_guarded_scenario();
    }
}

/// Attack: an IPv6 SSH session on a dual-stack endpoint whose policy allows TCP 22 but no
/// ICMPv6. The session's packets pass (RELATED,ESTABLISHED), but neighbour discovery is
/// untracked and dropped, so the session dies when the neighbour entry expires. The guard now
/// treats that as a lockout of the IPv6 session (`check` warns, `apply` refuses).
fn ipv6_neighbour_discovery_is_guarded_scenario() {
    let yaml = format!(
        "{}{}",
        allow_ports_policy("ssh-only", "22, 8080"),
        scenario_hep("host-eth0", Some("eth0"), "{role: web}")
    );
    let s = Scenario::new("ndguard", "legacy", &yaml);
    let session = format!("{PEER6} 50022 {HOST6} 22");
    let run_with = |args: &[&str]| {
        let mut cmd = hostfw_command(&s.pair.host, &s.work, SCENARIO_NODE, "legacy", args);
        cmd.env("SSH_CONNECTION", &session);
        run_hostfw(cmd)
    };
    let check = run_with(&["check"]);
    assert!(
        check.stderr.contains("neighbour solicitations"),
        "check does not warn: {check:?}"
    );
    let run = run_with(&["apply"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("neighbour solicitations") && run.stderr.contains("refusing to apply"),
        "{run:?}"
    );
}

#[test]
fn ipv6_neighbour_discovery_is_guarded() {
    if kernel_tests_enabled() {
        ipv6_neighbour_discovery_is_guarded_scenario();
    }
}
