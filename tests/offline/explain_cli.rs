//! `hostfw explain` on the built binary: text and JSON output, argument errors (exit 1). Needs
//! no root: it reads the policy directory and the interfaces, never the kernel's rules.

use std::process::Command;

const POLICY: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web}
spec:
  selector: "role == 'web'"
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
  - {action: Deny, protocol: TCP, destination: {ports: [9090]}}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h-eth9, labels: {role: web}}
spec: {interfaceName: eth9, node: n1}
"#;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn explain(args: &[&str]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hostfw"))
        .arg("--policy-dir")
        .arg(dir.path())
        .args(["--node", "n1", "explain"])
        .args(args)
        .env_remove("HOSTFW_POLICY_DIR")
        .env_remove("HOSTFW_NODENAME")
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The packet's arguments but its protocol and ports: from 198.51.100.2 to `dst` on eth9.
fn packet<'a>(direction: &'a str, dst: &'a str, proto: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--iface",
        "eth9",
        "--direction",
        direction,
        "--src",
        "198.51.100.2",
        "--dst",
        dst,
    ];
    args.extend_from_slice(proto);
    args
}

/// An ingress packet to 198.51.100.1 with `proto` (protocol, ports, options).
fn ingress<'a>(proto: &[&'a str]) -> Vec<&'a str> {
    packet("ingress", "198.51.100.1", proto)
}

#[test]
fn text_names_policy_and_rule() {
    let o = explain(&ingress(&["--proto", "tcp", "--dport", "9090"]));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("verdict:  DROP"), "{}", o.stdout);
    assert!(
        o.stdout
            .contains("decided:  GlobalNetworkPolicy web (tier default), ingress rule 1: Deny"),
        "{}",
        o.stdout
    );
}

#[test]
fn json_output() {
    let o = explain(&ingress(&[
        "--proto", "tcp", "--dport", "8080", "--output", "json",
    ]));
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "ACCEPT");
    assert_eq!(v["decision"]["kind"], "policy");
    assert_eq!(v["decision"]["rule"], 0);
    assert_eq!(v["packet"]["sport"], 49152);
}

#[test]
fn established_and_failsafe() {
    let o = explain(&ingress(&[
        "--proto",
        "tcp",
        "--dport",
        "9090",
        "--state",
        "established",
    ]));
    assert!(
        o.stdout.contains("conntrack: established flow accepted"),
        "{}",
        o.stdout
    );
    let o = explain(&ingress(&["--proto", "udp", "--dport", "68"]));
    assert!(
        o.stdout.contains("failsafe inbound entry udp:68"),
        "{}",
        o.stdout
    );
}

#[test]
fn bad_arguments_exit_1() {
    for extra in [
        vec!["--proto", "tcp"],
        vec!["--proto", "nosuch", "--dport", "1"],
        vec!["--proto", "icmpv6"],
        vec!["--proto", "icmp", "--dport", "1"],
    ] {
        let o = explain(&ingress(&extra));
        assert_eq!(o.code, 1, "{extra:?}: {}{}", o.stdout, o.stderr);
        assert!(o.stderr.contains("error:"), "{extra:?}: {}", o.stderr);
    }
    let o = explain(&packet("forward", "203.0.113.2", &["--proto", "icmp"]));
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("--out-iface"), "{}", o.stderr);
    let o = explain(&packet("ingress", "2001:db8::1", &["--proto", "icmp"]));
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("different IP families"), "{}", o.stderr);
}
