//! Every shipped example that covers an interface keeps IPv6 working with cold neighbour caches:
//! in a namespace pair with a dual-stack veth, after `ip -6 neigh flush` on both sides, IPv6 TCP
//! to the SSH failsafe port and to a service the example allows gets through (neighbour
//! discovery is allowed both ways), while a port it does not allow is denied. The policy-only
//! examples are tested together with a HostEndpoint of the test's own; felixconfiguration.yaml
//! covers no interface.

use crate::netns::*;
use std::path::Path;

/// One example (or set of examples) and the host it is written for.
struct Case {
    files: &'static [&'static str],
    /// A HostEndpoint the files do not bring themselves.
    extra: Option<&'static str>,
    node: &'static str,
    host_dev: &'static str,
    host: [&'static str; 2],
    peer: [&'static str; 2],
    allowed: u16,
    denied: u16,
}

const FAILSAFE_SSH: u16 = 22;

/// A dual-stack veth pair without static neighbours, the example applied on the host side, and
/// each probe made right after both neighbour caches are flushed.
fn check(case: &Case, backend: &str) {
    let tag = case.files[0].split('-').next().unwrap_or("ex");
    let host = Netns::new(&format!("nd{tag}-{backend}-h"));
    let peer = Netns::new(&format!("nd{tag}-{backend}-p"));
    veth(&host, case.host_dev, &peer, "eth0");
    for cidr in case.host {
        host.addr(case.host_dev, cidr);
    }
    for cidr in case.peer {
        peer.addr("eth0", cidr);
    }
    let work = Workdir::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/hostfw/examples");
    let mut files: Vec<(String, String)> = case
        .files
        .iter()
        .map(|f| {
            let yaml = std::fs::read_to_string(examples.join(f)).expect("read example");
            (f.to_string(), yaml)
        })
        .collect();
    if let Some(hep) = case.extra {
        files.push(("zz-test-endpoint.yaml".into(), hep.into()));
    }
    work.write_policy_files(&files);
    let applied = hostfw(&host, &work, case.node, backend, &["apply"]);
    assert_eq!(applied.code, 0, "{:?}: {applied:?}", case.files);

    let host6 = case.host[1].split('/').next().expect("address");
    // A set: for the policy-only examples the allowed service is SSH itself.
    let ports = std::collections::BTreeSet::from([FAILSAFE_SSH, case.allowed, case.denied]);
    let _servers: Vec<Server> = ports
        .iter()
        .map(|port| tcp_server(&host, sock(host6, *port)))
        .collect();
    let cold_tcp = |port: u16| {
        host.ip(&["-6", "neigh", "flush", "all"]);
        peer.ip(&["-6", "neigh", "flush", "all"]);
        tcp_ok(&peer, None, sock(host6, port))
    };
    assert!(
        cold_tcp(FAILSAFE_SSH),
        "{:?}: IPv6 SSH failsafe with cold caches",
        case.files
    );
    assert!(
        cold_tcp(case.allowed),
        "{:?}: IPv6 tcp/{} with cold caches",
        case.files,
        case.allowed
    );
    assert!(
        !cold_tcp(case.denied),
        "{:?}: IPv6 tcp/{} should be denied",
        case.files,
        case.denied
    );
}

fn k8s_worker(backend: &str) {
    check(
        &Case {
            files: &["k8s-worker.yaml"],
            extra: None,
            node: "my-host",
            host_dev: "eth0",
            host: ["198.51.100.1/24", "2001:db8::1/64"],
            peer: ["198.51.100.2/24", "2001:db8::2/64"],
            allowed: 10250,
            denied: 8080,
        },
        backend,
    );
}

fn web_server(backend: &str) {
    // web1's endpoint has no interfaceName: it governs the interface carrying its expectedIPs.
    check(
        &Case {
            files: &["web-server.yaml"],
            extra: None,
            node: "web1",
            host_dev: "eth0",
            host: ["198.51.100.80/24", "2001:db8::80/64"],
            peer: ["198.51.100.2/24", "2001:db8::2/64"],
            allowed: 443,
            denied: 8080,
        },
        backend,
    );
}

fn prednat_masters(backend: &str) {
    check(
        &Case {
            files: &["prednat-masters.yaml"],
            extra: None,
            node: "master1",
            host_dev: "em4",
            host: ["203.0.113.219/24", "2001:db8::1/64"],
            peer: ["203.0.113.2/24", "2001:db8::2/64"],
            allowed: 80,
            denied: 8080,
        },
        backend,
    );
}

/// The policy-only examples as they are meant to be used, together, on one managed interface;
/// the peer sits in the management network allow-ssh-from-management admits.
const MANAGED_HEP: &str = "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: test-eth0
  labels: {ssh: managed}
spec:
  node: hfw-test
  interfaceName: eth0
";

fn policy_examples_together(backend: &str) {
    check(
        &Case {
            files: &[
                "allow-ssh-from-management.yaml",
                "default-deny-dns-ntp.yaml",
                "globalnetworkset-denylist.yaml",
            ],
            extra: Some(MANAGED_HEP),
            node: SCENARIO_NODE,
            host_dev: "eth0",
            host: ["198.51.100.1/24", "2001:db8:100::1/64"],
            peer: ["198.51.100.2/24", "2001:db8:100::2/64"],
            allowed: 22,
            denied: 8080,
        },
        backend,
    );
}

on_both_backends!(k8s_worker);
on_both_backends!(web_server);
on_both_backends!(prednat_masters);
on_both_backends!(policy_examples_together);
