//! Benchmark (harness = false, needs root): apply against the real kernel inside throw-away
//! network namespaces, against the one-shot apply targets at 10,000 policies / 100,000 rules:
//! 1. a first `hostfw apply` (end to end: load, resolve, render, read, plan, write, verify) vs a
//!    bare `iptables-restore` of the same rendered payload (target: within 1.1×), with and
//!    without `--noflush`;
//! 2. changing one rule of one policy: `hostfw apply` vs a bare `iptables-restore --noflush` of
//!    just the changed chain (target: within 1.5×);
//! 3. an in-sync `hostfw apply` runs no restore at all (checked with failing restore wrappers).
//!
//! The same three through `sync::reconcile` alone (policy loading excluded) are printed too.
//! Both backends; IPv4 (`ipv6Support: false`, so both sides write the same single family).
//! `cargo bench --bench apply` runs the full size; under `cargo test --all-targets` (no `--bench`
//! argument) it runs at 1/100 scale as a smoke test. `HOSTFW_BENCH_BACKENDS=nft` limits the
//! backends.

// The kernel tests' namespace harness; the bench uses only a few of its helpers.
#[path = "../tests/kernel/netns.rs"]
#[allow(dead_code)]
mod netns;

use hostfw::cmd::common::{load_desired, Want};
use hostfw::dataplane::{Backend, RealDataplane};
use hostfw::desired::Families;
use hostfw::ruleset::restore::{ruleset_restore, table_restore};
use hostfw::ruleset::{Family, Ruleset, Table, TableName};
use hostfw::settings::Settings;
use hostfw::sync::{reconcile, reconcile_cached, LiveCache, SyncOptions};
use netns::{hostfw as run_hostfw, hostfw_with_path, Netns, Workdir};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = "bench";
const RULES_PER_POLICY: usize = 10;
/// The policy whose rule the "one-rule change" edits.
const CHANGED: usize = 4242;

/// The policy directory: settings and the endpoint in one file, the policies spread over 100
/// files (a single file would exceed the loader's size limit).
fn policy_files(policies: usize, changed_port: u16) -> Vec<(String, String)> {
    let mut files = vec![(
        "00-base.yaml".to_string(),
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\n\
         spec:\n  ipv6Support: false\n---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\n\
         metadata:\n  name: bench-eth0\n  labels: {role: bench}\nspec:\n  interfaceName: eth0\n  \
         node: bench\n"
            .to_string(),
    )];
    let per_file = policies.div_ceil(100);
    for (f, chunk) in (0..policies)
        .collect::<Vec<_>>()
        .chunks(per_file)
        .enumerate()
    {
        let mut out = String::with_capacity(chunk.len() * 800);
        for &i in chunk {
            policy(i, policies, changed_port, &mut out);
        }
        files.push((format!("p{f:03}.yaml"), out));
    }
    files
}

/// One inbound policy of ten rules (every third one a Deny), each with a source and a port.
fn policy(i: usize, policies: usize, changed_port: u16, out: &mut String) {
    let _ = write!(
        out,
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  \
         name: p{i:05}\nspec:\n  order: {i}\n  selector: \"role == 'bench'\"\n  types: [Ingress]\n  \
         ingress:\n"
    );
    for r in 0..RULES_PER_POLICY {
        let port = if i == CHANGED % policies && r == 0 {
            changed_port
        } else {
            (1000 + (i * RULES_PER_POLICY + r) % 60000) as u16
        };
        let _ = write!(
            out,
            "  - action: {}\n    protocol: TCP\n    source:\n      nets: [\"198.51.{}.{}/32\"]\n    \
             destination:\n      ports: [{port}]\n",
            if r % 3 == 2 { "Deny" } else { "Allow" },
            (i / 250) % 256,
            i % 250
        );
    }
}

/// A namespace with `eth0` (one end of a veth pair whose other end stays inside) holding
/// 198.51.100.1.
fn bench_netns(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0-peer",
    ]);
    ns.ip(&["addr", "add", "198.51.100.1/24", "dev", "eth0"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    ns
}

fn settings(work: &Workdir) -> Settings {
    Settings {
        policy_dir: work.policy_dir(),
        node: NODE.into(),
        backend: None,
        run_dir: work.dir.path().join("run"),
        state_dir: work.dir.path().join("state"),
        lockout_guard: hostfw::guard::DaemonMode::Warn,
        datastore: hostfw::settings::DatastoreSettings::default(),
    }
}

/// The IPv4 ruleset as `hostfw apply` would render it, resolved inside `ns`.
fn desired(ns: &Netns, work: &Workdir) -> Ruleset {
    let settings = settings(work);
    ns.run_in(move || {
        let want = Want {
            families: Families::Only(Family::V4),
            guard: false,
            print_warnings: true,
        };
        let Ok(mut desired) = load_desired(&settings, want) else {
            panic!("bench policies do not load");
        };
        desired.rulesets.remove(0)
    })
}

/// Time `ip netns exec NS tool args` fed with `input`.
fn timed_restore(ns: &Netns, tool: &str, args: &[&str], input: &str) -> Duration {
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, tool])
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn restore");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("feed restore");
    let out = child.wait_with_output().expect("restore");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn timed_apply(ns: &Netns, work: &Workdir, backend: &str) -> (Duration, String) {
    let started = Instant::now();
    let run = run_hostfw(ns, work, NODE, backend, &["apply"]);
    let took = started.elapsed();
    assert_eq!(run.code, 0, "apply: {run:?}");
    (took, run.stdout)
}

/// The one chain of `after` whose rules differ from `before` (filter table).
fn changed_chain(before: &Ruleset, after: &Ruleset) -> Table {
    let filter = |r: &Ruleset| {
        r.tables
            .iter()
            .find(|t| t.name == TableName::Filter)
            .expect("filter")
            .clone()
    };
    let (old, new) = (filter(before), filter(after));
    let mut changed: Vec<_> = new
        .chains
        .iter()
        .filter(|(name, chain)| old.chains.get(*name) != Some(*chain))
        .map(|(name, chain)| (name.clone(), chain.clone()))
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "expected one changed chain: {:?}",
        changed.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    let (name, chain) = changed.remove(0);
    Table {
        name: TableName::Filter,
        chains: [(name, chain)].into_iter().collect(),
        hooks: Vec::new(),
    }
}

fn failing_restore_wrappers(dir: &Path, backend: &str) {
    use std::os::unix::fs::PermissionsExt;
    for name in [
        format!("iptables-{backend}-restore"),
        "iptables-restore".to_string(),
    ] {
        let path = dir.join(name);
        std::fs::write(
            &path,
            "#!/bin/sh\necho 'restore must not run when in sync' >&2\nexit 1\n",
        )
        .expect("wrapper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

fn secs(d: Duration) -> String {
    format!("{:8.3} s", d.as_secs_f64())
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:6.2}×", a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}

fn bench(backend: &'static str, policies: usize) {
    let be = match backend {
        "legacy" => Backend::Legacy,
        _ => Backend::Nft,
    };
    let restore_tool = format!("iptables-{backend}-restore");
    let work = Workdir::new();
    work.write_policy_files(&policy_files(policies, 7));

    // 1. First apply, end to end, vs bare restore of the rendered payload.
    let target = bench_netns(&format!("bench-{backend}-a"));
    let ruleset = desired(&target, &work);
    let payload = ruleset_restore(&ruleset);
    let rules = payload
        .lines()
        .filter(|l| l.starts_with("-A ") || l.starts_with("-I "))
        .count();
    let (first, summary) = timed_apply(&target, &work, backend);

    let bare_ns = bench_netns(&format!("bench-{backend}-b"));
    let bare_full = timed_restore(&bare_ns, &restore_tool, &[], &payload);
    // hostfw must use --noflush (other tools' rules live in the same tables); on nft that
    // alone roughly doubles the cost, so compare with it too.
    let noflush_ns = bench_netns(&format!("bench-{backend}-d"));
    let bare_noflush = timed_restore(&noflush_ns, &restore_tool, &["--noflush"], &payload);
    drop(noflush_ns);

    // 3. In sync: no restore may run (the wrappers would fail it).
    let wrappers = tempfile::tempdir().expect("tempdir");
    failing_restore_wrappers(wrappers.path(), backend);
    let started = Instant::now();
    let again = hostfw_with_path(
        &target,
        &work,
        NODE,
        backend,
        &["apply"],
        Some(wrappers.path()),
    );
    let in_sync = started.elapsed();
    assert_eq!(again.code, 0, "in-sync apply ran a restore: {again:?}");
    assert!(again.stdout.contains("in sync"), "{again:?}");

    // 2. One rule of one policy changes.
    work.write_policy_files(&policy_files(policies, 7007));
    let changed_ruleset = desired(&target, &work);
    let chain = changed_chain(&ruleset, &changed_ruleset);
    let (one, one_summary) = timed_apply(&target, &work, backend);
    let bare_one = timed_restore(
        &bare_ns,
        &restore_tool,
        &["--noflush"],
        &table_restore(&chain),
    );

    // The same through sync::reconcile alone (no policy loading), in a third namespace.
    let lib_ns = bench_netns(&format!("bench-{backend}-c"));
    let (lib_first, lib_sync, lib_one, lib_cached) = lib_ns.run_in(move || {
        let dp = RealDataplane::new(be).expect("tools");
        let opts = SyncOptions::default();
        let t = Instant::now();
        reconcile(std::slice::from_ref(&ruleset), &dp, &opts).expect("first reconcile");
        let first = t.elapsed();
        let t = Instant::now();
        let report = reconcile(std::slice::from_ref(&ruleset), &dp, &opts).expect("in sync");
        let in_sync = t.elapsed();
        assert!(report.in_sync(), "second reconcile wrote: {report:?}");
        let t = Instant::now();
        reconcile(std::slice::from_ref(&changed_ruleset), &dp, &opts).expect("one change");
        let one = t.elapsed();
        // The daemon's path: the state verified by the last pass is cached, so the change is
        // planned without a first read (change back and forth once to fill the cache).
        let mut cache = LiveCache::default();
        reconcile_cached(std::slice::from_ref(&ruleset), &dp, &opts, &mut cache).expect("back");
        let t = Instant::now();
        reconcile_cached(
            std::slice::from_ref(&changed_ruleset),
            &dp,
            &opts,
            &mut cache,
        )
        .expect("cached change");
        (first, in_sync, one, t.elapsed())
    });

    println!("\n== backend {backend}: {policies} policies, {rules} rules (IPv4)");
    println!(
        "  first apply, end to end        {}  ({})",
        secs(first),
        summary.trim()
    );
    println!(
        "  bare iptables-restore, same    {}  ratio {}",
        secs(bare_full),
        ratio(first, bare_full)
    );
    println!(
        "  bare restore --noflush, same   {}  ratio {}",
        secs(bare_noflush),
        ratio(first, bare_noflush)
    );
    println!(
        "  first reconcile (sync only)    {}  ratio {}",
        secs(lib_first),
        ratio(lib_first, bare_full)
    );
    println!(
        "  one-rule change, end to end    {}  ({})",
        secs(one),
        one_summary.trim()
    );
    println!(
        "  bare restore --noflush, chain  {}  ratio {}",
        secs(bare_one),
        ratio(one, bare_one)
    );
    println!(
        "  one-rule reconcile (sync only) {}  ratio {}",
        secs(lib_one),
        ratio(lib_one, bare_one)
    );
    println!(
        "  one-rule reconcile from cache  {}  ratio {}",
        secs(lib_cached),
        ratio(lib_cached, bare_one)
    );
    println!(
        "  in-sync apply, end to end      {}  (no restore run: verified)",
        secs(in_sync)
    );
    println!("  in-sync reconcile (sync only)  {}", secs(lib_sync));
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("*** skipped: the apply benchmark needs root (network namespaces) ***");
        return;
    }
    let policies = if full { 10_000 } else { 100 };
    let backends = std::env::var("HOSTFW_BENCH_BACKENDS").unwrap_or_else(|_| "legacy,nft".into());
    for backend in ["legacy", "nft"] {
        if backends.split(',').any(|b| b == backend) {
            bench(backend, policies);
        }
    }
}
