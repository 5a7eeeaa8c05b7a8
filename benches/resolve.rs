//! Benchmark (harness = false): load + validate + resolve a large policy directory, against the
//! performance target: 10,000 GlobalNetworkPolicies with 100,000 rules and 1,000 HostEndpoints
//! (20 on this node) in under 1 s, peak memory under 300 MB. Prints the figures; run with
//! `cargo bench --bench resolve`. Under `cargo test --all-targets` (no `--bench` argument) it
//! runs at 1/100 scale as a smoke test.

mod common;

use common::{POLICIES, RULES_PER_POLICY};

use hostfw::resolve::{resolve, HostInterfaces};
use std::fmt::Write;
use std::time::Instant;

const NODES: usize = 50;
const HEPS_PER_NODE: usize = 20;
const POLICY_FILES: usize = 100;

/// One GlobalNetworkPolicy with ten rules: ports, nets, a selector and ICMP, both directions.
fn policy(i: usize, out: &mut String) {
    common::policy_head(i, "", 4, out);
    for r in 0..RULES_PER_POLICY / 2 {
        let port = 1000 + (i * 7 + r) % 60000;
        let _ = write!(
            out,
            "  - action: Allow\n    protocol: TCP\n    source:\n      nets: [\"198.51.{}.0/24\"]\n    \
             destination:\n      ports: [{port}, \"{}:{}\"]\n",
            (i + r) % 256,
            port + 1,
            port + 10
        );
    }
    out.push_str("  egress:\n");
    for r in 0..RULES_PER_POLICY / 2 {
        if r == 0 {
            out.push_str("  - action: Allow\n    protocol: ICMP\n    icmp: {type: 8}\n");
        } else {
            let _ = write!(
                out,
                "  - action: Deny\n    protocol: UDP\n    destination:\n      selector: \"role == 'r{}'\"\n      ports: [{}]\n",
                (i + r) % 25,
                2000 + r
            );
        }
    }
}

fn host_endpoint(node: usize, n: usize, out: &mut String) {
    let _ = write!(
        out,
        "---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  \
         name: node{node:03}-if{n:02}\n  labels:\n    role: r{}\n    zone: z{}\n    env: e{}\n\
         spec:\n  node: node{node:03}\n  interfaceName: eth{n}\n  expectedIPs: [\"203.0.{}.{}\"]\n",
        (node + n) % 25,
        n % 7,
        node % 3,
        node % 256,
        n + 1
    );
}

fn main() {
    // cargo bench passes --bench; cargo test does not.
    let scale = common::scale();
    let dir = tempfile::tempdir().expect("temp dir");
    let per_file = POLICIES / POLICY_FILES / scale;
    for f in 0..POLICY_FILES {
        let mut text = String::new();
        for i in f * per_file..(f + 1) * per_file {
            policy(i, &mut text);
        }
        std::fs::write(dir.path().join(format!("gnp-{f:03}.yaml")), text).expect("write");
    }
    let mut heps = String::new();
    // Keep node007 (the node resolved below) at every scale.
    let nodes = if scale == 1 { NODES } else { 10 };
    for node in 0..nodes {
        for n in 0..HEPS_PER_NODE {
            host_endpoint(node, n, &mut heps);
        }
    }
    std::fs::write(dir.path().join("heps.yaml"), heps).expect("write");

    let interfaces: HostInterfaces = (0..HEPS_PER_NODE)
        .map(|n| {
            (
                format!("eth{n}"),
                vec![format!("203.0.7.{}", n + 1).parse().unwrap()],
            )
        })
        .collect();

    let start = Instant::now();
    let loaded = hostfw::source::load_paths(&[dir.path().to_path_buf()]);
    let loaded_at = start.elapsed();
    let (set, rules) = common::loaded_set(loaded);
    let (policies, host_endpoints) = (set.policies.len(), set.host_endpoints.len());
    let resolve_start = Instant::now();
    let view = resolve(&set, "node007", &interfaces);
    let resolved = resolve_start.elapsed();
    let total = start.elapsed();

    let applied: usize = view
        .endpoints
        .iter()
        .map(|e| hostfw::resolve::flat_names(&e.policies.ingress).len())
        .sum();
    println!(
        "resolve bench: {} policies, {rules} rules, {} host endpoints; {} active here, {applied} \
         (endpoint, ingress policy) pairs",
        policies,
        host_endpoints,
        view.endpoints.len()
    );
    println!(
        "  load+validate {:.1} ms, resolve {:.1} ms, total {:.1} ms (target < 1000 ms)",
        loaded_at.as_secs_f64() * 1e3,
        resolved.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );
    if let Some(mb) = common::peak_rss_mb() {
        println!("  peak RSS {mb:.0} MB (target < 300 MB)");
    }
}
