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

const BASE: [&str; 8] = [
    "--iface",
    "eth9",
    "--direction",
    "ingress",
    "--src",
    "198.51.100.2",
    "--dst",
    "198.51.100.1",
];

#[test]
fn text_names_policy_and_rule() {
    let mut args = BASE.to_vec();
    args.extend(["--proto", "tcp", "--dport", "9090"]);
    let o = explain(&args);
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
    let mut args = BASE.to_vec();
    args.extend(["--proto", "tcp", "--dport", "8080", "--output", "json"]);
    let o = explain(&args);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "ACCEPT");
    assert_eq!(v["decision"]["kind"], "policy");
    assert_eq!(v["decision"]["rule"], 0);
    assert_eq!(v["packet"]["sport"], 49152);
}

#[test]
fn established_and_failsafe() {
    let mut args = BASE.to_vec();
    args.extend([
        "--proto",
        "tcp",
        "--dport",
        "9090",
        "--state",
        "established",
    ]);
    let o = explain(&args);
    assert!(
        o.stdout.contains("conntrack: established flow accepted"),
        "{}",
        o.stdout
    );
    let mut args = BASE.to_vec();
    args.extend(["--proto", "udp", "--dport", "68"]);
    let o = explain(&args);
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
        let mut args = BASE.to_vec();
        args.extend(extra.iter().copied());
        let o = explain(&args);
        assert_eq!(o.code, 1, "{extra:?}: {}{}", o.stdout, o.stderr);
        assert!(o.stderr.contains("error:"), "{extra:?}: {}", o.stderr);
    }
    let o = explain(&[
        "--iface",
        "eth9",
        "--direction",
        "forward",
        "--src",
        "198.51.100.2",
        "--dst",
        "203.0.113.2",
        "--proto",
        "icmp",
    ]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("--out-iface"), "{}", o.stderr);
    let o = explain(&[
        "--iface",
        "eth9",
        "--direction",
        "ingress",
        "--src",
        "198.51.100.2",
        "--dst",
        "2001:db8::1",
        "--proto",
        "icmp",
    ]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("different IP families"), "{}", o.stderr);
}
