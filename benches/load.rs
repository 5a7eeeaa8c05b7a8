//! Benchmark (harness = false): load + validate only (no resolution) of a deterministic policy
//! set generated in memory: 10,000 GlobalNetworkPolicies with 100,000 rules in 100 sources and
//! 1,000 HostEndpoints. Target: under 1 s, modest memory. Prints parse and validate times, the
//! input size and peak RSS. `cargo bench --bench load`; under `cargo test --all-targets` (no
//! `--bench` argument) it runs at 1/100 scale as a smoke test.

mod common;

use common::{POLICIES, RULES_PER_POLICY};

use hostfw::policy::{load_sources, parse, validate};
use hostfw::source::NamedText;
use std::fmt::Write;
use std::time::{Duration, Instant};

const HOST_ENDPOINTS: usize = 1_000;
const SOURCES: usize = 100;

/// One policy: a selector, five ingress rules (nets, ports, ranges, named ports, ICMP) and five
/// egress rules (selectors, notNets, UDP ports).
fn policy(i: usize, out: &mut String) {
    common::policy_head(i, &format!("  labels: {{team: t{}}}\n", i % 40), 3, out);
    for r in 0..RULES_PER_POLICY / 2 {
        if r == 4 {
            out.push_str("  - action: Allow\n    protocol: ICMP\n    icmp: {type: 8, code: 0}\n");
            continue;
        }
        let port = 1000 + (i * 7 + r) % 60000;
        let _ = write!(
            out,
            "  - action: Allow\n    protocol: TCP\n    source:\n      nets: [\"198.51.{}.0/24\", \"203.0.113.{}/32\"]\n    \
             destination:\n      ports: [{port}, \"{}:{}\", ssh]\n",
            (i + r) % 256,
            (i + r) % 256,
            port + 1,
            port + 10
        );
    }
    out.push_str("  egress:\n");
    for r in 0..RULES_PER_POLICY / 2 {
        let _ = write!(
            out,
            "  - action: Deny\n    protocol: UDP\n    destination:\n      selector: \"role == 'r{}'\"\n      \
             notNets: [\"10.{}.0.0/16\"]\n      ports: [{}]\n",
            (i + r) % 25,
            r,
            2000 + r
        );
    }
}

fn host_endpoint(n: usize, out: &mut String) {
    let _ = write!(
        out,
        "---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: host{:03}-eth{}\n  \
         labels:\n    role: r{}\n    zone: z{}\nspec:\n  node: host{:03}\n  interfaceName: eth{}\n  \
         expectedIPs: [\"203.0.{}.{}\"]\n  ports: [{{name: ssh, protocol: TCP, port: 22}}]\n",
        n / 4,
        n % 4,
        n % 25,
        n % 7,
        n / 4,
        n % 4,
        n / 250,
        n % 250 + 1
    );
}

/// CPU time (user + system) of this process so far: on a shared, busy machine wall time
/// measures the neighbours too, CPU time measures us.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let scale = common::scale();
    let per_source = POLICIES / SOURCES / scale;
    let mut sources = Vec::new();
    for s in 0..SOURCES {
        let mut text = String::new();
        for i in s * per_source..(s + 1) * per_source {
            policy(i, &mut text);
        }
        sources.push(NamedText {
            name: format!("gnp-{s:03}.yaml"),
            text,
        });
    }
    let mut heps = String::new();
    for n in 0..HOST_ENDPOINTS / scale {
        host_endpoint(n, &mut heps);
    }
    sources.push(NamedText {
        name: "heps.yaml".into(),
        text: heps,
    });
    let bytes: usize = sources.iter().map(|s| s.text.len()).sum();
    let rss_before = common::peak_rss_mb().unwrap_or(0.0);

    // The whole path as the agent runs it.
    let start = Instant::now();
    let cpu_start = cpu_time();
    let loaded = load_sources(&sources);
    let total = start.elapsed();
    let cpu = cpu_time() - cpu_start;
    let peak = common::peak_rss_mb();
    let (set, rules) = common::loaded_set(loaded);
    assert_eq!(set.policies.len(), POLICIES / scale);
    assert_eq!(rules, POLICIES / scale * RULES_PER_POLICY);
    assert_eq!(set.host_endpoints.len(), HOST_ENDPOINTS / scale);
    drop(set);

    // The two stages timed separately, file by file as `load_sources` interleaves them.
    let (mut parsed, mut validated) = (Duration::ZERO, Duration::ZERO);
    let mut validator = validate::Validator::default();
    for s in &sources {
        let t0 = Instant::now();
        let (raw, _) = parse::parse(&s.name, &s.text);
        let t1 = Instant::now();
        for r in &raw {
            validator.add(r);
        }
        parsed += t1 - t0;
        validated += t1.elapsed();
    }
    let t = Instant::now();
    let (_, diags) = validator.finish();
    validated += t.elapsed();
    assert!(diags.iter().all(|d| !d.is_error()));

    println!(
        "load bench: {} policies, {rules} rules, {} host endpoints, {:.1} MB of YAML",
        POLICIES / scale,
        HOST_ENDPOINTS / scale,
        bytes as f64 / 1e6
    );
    println!(
        "  load+validate {:.1} ms wall, {:.0} ms CPU (parse {:.1} ms, validate {:.1} ms; target < 1000 ms)",
        total.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e3,
        parsed.as_secs_f64() * 1e3,
        validated.as_secs_f64() * 1e3
    );
    if let Some(peak) = peak {
        println!("  peak RSS {peak:.0} MB (input text alone {:.0} MB; {rss_before:.0} MB before loading)", bytes as f64 / 1e6);
    }
}
