//! Benchmark (harness = false, needs root, etcd): a fleet of 10 hosts (network namespaces on a
//! bridge, one `hostfw run --datastore-type etcdv3` each) sharing 1,000 policies and 100
//! HostEndpoints (10 per node) in one etcd. Prints:
//! 1. push: `hostfw datastore push` of the whole set;
//! 2. cold start: daemon start until its status lists every policy (list + validate + resolve +
//!    render + apply + verify), one host alone, then the other nine started together;
//! 3. edit → kernel: an edited policy until each host's status reports the new set, p50/p99,
//!    with one host running, with all ten, and with all ten at S scale (10 policies);
//! 4. memory: each daemon's VmRSS and VmHWM;
//! 5. reconnect: etcd restarted until every host reports `connected` again.
//!
//! Every figure is printed with the load average (`/proc/loadavg`) when it was taken.
//!
//! `cargo bench --bench fleet` runs it against the optimised binary (the bench profile is the
//! release one, and the harness runs `CARGO_BIN_EXE_hostfw` of the profile being built);
//! without `--bench` (as under `cargo test --all-targets`) it only checks that the generated
//! set loads.

// The kernel tests' namespace and etcd harnesses, shared by path so the bench drives the same
// hosts the tests do; it uses only some of their helpers, hence the allowance.
#[path = "../tests/kernel/netns.rs"]
#[allow(dead_code)]
mod netns;

#[path = "../tests/kernel/etcd.rs"]
#[allow(dead_code)]
mod etcd;

use etcd::{hostfw_etcd, hostfw_etcd_command, Etcd};
use netns::{veth, Netns, Workdir};
use std::fmt::Write as _;
use std::fs;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const NODES: usize = 10;
const HEPS_PER_NODE: usize = 10;
const POLICIES: usize = 1000;
const EDITS: usize = 20;
const HUB_IP: &str = "198.51.100.100";
const PREFIX: &str = "/calico/resources/v3/projectcalico.org/";
const WITHIN: Duration = Duration::from_secs(300);

fn node(i: usize) -> String {
    format!("n{i:02}")
}

/// The fleet's resources as policy files: per node one enforced HostEndpoint (eth0) and nine
/// expectedIPs-only ones in group `g<k>`; 1,000 policies on every node's eth0, each admitting
/// one port from one group (so every host holds ten selector ipsets), and egress open.
fn files(policies: usize) -> Vec<(String, String)> {
    let mut heps = String::new();
    for n in 0..NODES {
        let _ = write!(
            heps,
            "---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: {0}-eth0\n  \
             labels: {{role: fleet}}\nspec:\n  node: {0}\n  interfaceName: eth0\n  expectedIPs: [\"198.51.100.{1}\"]\n",
            node(n),
            10 + n
        );
        for k in 1..HEPS_PER_NODE {
            let _ = write!(
                heps,
                "---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: {0}-x{k}\n  \
                 labels: {{group: g{k}}}\nspec:\n  node: {0}\n  expectedIPs: [\"203.0.{n}.{k}\"]\n",
                node(n)
            );
        }
    }
    let mut out = vec![
        (
            "00-base.yaml".to_string(),
            "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\n\
             spec:\n  ipv6Support: false\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
             metadata:\n  name: egress\nspec:\n  selector: all()\n  types: [Egress]\n  egress:\n  - action: Allow\n"
                .to_string(),
        ),
        ("01-heps.yaml".to_string(), heps),
    ];
    let mut text = String::new();
    for i in 0..policies {
        text.push_str(&policy(i, 1000 + i as u16));
    }
    out.push(("02-policies.yaml".to_string(), text));
    out
}

fn policy(i: usize, port: u16) -> String {
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p{i:04}\n\
         spec:\n  order: {i}\n  selector: role == 'fleet'\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    \
         protocol: TCP\n    source:\n      selector: group == 'g{}'\n    destination:\n      ports: [{port}]\n",
        1 + i % (HEPS_PER_NODE - 1)
    )
}

struct Host {
    ns: Netns,
    name: String,
    work: Workdir,
    child: Option<Child>,
}

impl Host {
    fn status(&self) -> serde_json::Value {
        fs::read_to_string(self.work.dir.path().join("run/status.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    fn policy_count(&self) -> usize {
        self.status()["policies"].as_array().map_or(0, Vec::len)
    }

    fn generation(&self) -> u64 {
        self.status()["policy"]["generation"].as_u64().unwrap_or(0)
    }

    /// CPU time the daemon and the children it has reaped (iptables-restore, ipset...) used.
    fn cpu(&self) -> Duration {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return Duration::ZERO;
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised command name start at `state`; utime, stime, cutime
        // and cstime follow at 11..=14 (proc(5)).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks: u64 = (11..=14)
            .filter_map(|i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        // SAFETY: sysconf reads a constant of the running system and has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    fn proc_kb(&self, field: &str) -> u64 {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return 0;
        };
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

/// The 1, 5 and 15 minute load averages, for the figures printed after it.
fn load() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let avg: Vec<&str> = text.split_whitespace().take(3).collect();
    format!("load {}", avg.join(" "))
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WITHIN;
    while !cond() {
        assert!(Instant::now() < end, "not within {WITHIN:?}: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// For each host from `first` on, the time since `t` until `cond` held for it, in the order
/// they got there.
fn arrivals(
    hosts: &[Host],
    t: Instant,
    first: usize,
    what: &str,
    cond: impl Fn(&Host) -> bool,
) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut done: Vec<bool> = (0..hosts.len()).map(|i| i < first).collect();
    while done.iter().any(|d| !d) {
        for (i, h) in hosts.iter().enumerate() {
            if !done[i] && cond(h) {
                done[i] = true;
                out.push(t.elapsed());
            }
        }
        assert!(t.elapsed() < WITHIN, "not within {WITHIN:?}: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    out
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[(((v.len() - 1) as f64) * p).round() as usize]
}

/// `EDITS` edits of policy `p0004` (its port), each timed from the put until every host in
/// `which` reports a new policy generation; prints p50/p99 per host.
fn edits(hosts: &[Host], which: &[usize], etcd: &Etcd, label: &str) {
    let key = format!("{PREFIX}globalnetworkpolicies/default.p0004");
    let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); hosts.len()];
    let cpu_before: Vec<Duration> = which.iter().map(|&i| hosts[i].cpu()).collect();
    for e in 0..EDITS {
        let before: Vec<u64> = hosts.iter().map(Host::generation).collect();
        let mut stored: serde_json::Value =
            serde_json::from_str(&etcd.get(&key).expect("p0004 stored")).expect("json");
        stored["spec"]["ingress"][0]["destination"]["ports"] = serde_json::json!([20000 + e]);
        let t = Instant::now();
        etcd.put(&key, &stored.to_string());
        let mut seen: Vec<bool> = (0..hosts.len()).map(|i| !which.contains(&i)).collect();
        while seen.iter().any(|s| !s) {
            for (i, h) in hosts.iter().enumerate() {
                if !seen[i] && h.generation() > before[i] {
                    seen[i] = true;
                    lat[i].push(t.elapsed());
                }
            }
            assert!(t.elapsed() < WITHIN, "edit {e}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let cpu: Duration = which
        .iter()
        .zip(&cpu_before)
        .map(|(&i, before)| hosts[i].cpu().saturating_sub(*before))
        .sum();
    println!(
        "CPU per edit, {label}: {:?} per host, {:?} for all {} (daemon and its reaped children, \
         {} cores)",
        cpu / (EDITS * which.len()) as u32,
        cpu / EDITS as u32,
        which.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for &i in which {
        // In edit order, before `pct` sorts them: a slow edit shows where it fell.
        let each: Vec<String> = lat[i].iter().map(|d| d.as_millis().to_string()).collect();
        println!(
            "edit → kernel, {label}, {}, each (ms): {}",
            node(i),
            each.join(" ")
        );
        let (p50, p99) = (pct(&mut lat[i], 0.5), pct(&mut lat[i], 0.99));
        println!(
            "edit → kernel, {label}, {}: p50 {p50:?}, p99 {p99:?} ({EDITS} edits; {})",
            node(i),
            load()
        );
    }
}

fn start(host: &mut Host, etcd: &Etcd) {
    let log = fs::File::create(host.work.dir.path().join("daemon.log")).expect("log");
    host.child = Some(
        hostfw_etcd_command(&host.ns, &host.work, &host.name, etcd, &["run"])
            .env("RUST_LOG", "warn")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start daemon"),
    );
}

fn smoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files(POLICIES) {
        fs::write(dir.path().join(name), text).expect("write");
    }
    let loaded = hostfw::source::load_paths(&[dir.path().to_path_buf()]);
    assert!(loaded.set.is_some(), "{:?}", loaded.diagnostics);
    println!(
        "fleet bench set: {POLICIES} policies, {} HostEndpoints: loads",
        NODES * HEPS_PER_NODE
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        smoke();
        return;
    }
    assert!(
        etcd::etcd_tests_enabled(),
        "the fleet bench needs root, iproute2 and etcd"
    );
    let hub = Netns::new("bfleet-hub");
    hub.ip(&["link", "add", "br0", "type", "bridge"]);
    hub.ip(&["link", "set", "br0", "up"]);
    hub.addr("br0", &format!("{HUB_IP}/24"));
    // The whole set goes in as one transaction of ~1,100 writes, as an operator raising the
    // server's limit would push it (etcd's default --max-txn-ops of 128 refuses it whole).
    let mut etcd = Etcd::start_flags(&hub, HUB_IP, &["--max-txn-ops", "2048"]);
    let mut hosts: Vec<Host> = (0..NODES)
        .map(|n| {
            let ns = Netns::new(&format!("bfleet-{}", node(n)));
            let dev = format!("vb{n}");
            veth(&ns, "eth0", &hub, &dev);
            hub.ip(&["link", "set", &dev, "master", "br0"]);
            ns.addr("eth0", &format!("198.51.100.{}/24", 10 + n));
            Host {
                ns,
                name: node(n),
                work: Workdir::new(),
                child: None,
            }
        })
        .collect();

    hosts[0].work.write_policy_files(&files(POLICIES));
    let dir = hosts[0].work.policy_dir();
    let t = Instant::now();
    let push = hostfw_etcd(
        &hosts[0].ns,
        &hosts[0].work,
        "n00",
        &etcd,
        &["datastore", "push", dir.to_str().unwrap()],
    );
    assert_eq!(push.code, 0, "{push:?}");
    println!(
        "push of {} resources: {:?} ({}; {})",
        POLICIES + 1 + NODES * HEPS_PER_NODE + 1,
        t.elapsed(),
        push.stdout.trim(),
        load()
    );

    let want = POLICIES + 1;
    let t = Instant::now();
    start(&mut hosts[0], &etcd);
    wait("n00 cold start", || hosts[0].policy_count() == want);
    println!("cold start, one host alone: {:?} ({})", t.elapsed(), load());
    edits(&hosts, &[0], &etcd, "1,000 policies, one host running");
    let t = Instant::now();
    for h in hosts.iter_mut().skip(1) {
        start(h, &etcd);
    }
    let starts = arrivals(&hosts, t, 1, "cold start of nine hosts", |h| {
        h.policy_count() == want
    });
    println!(
        "cold start, nine hosts at once on {} cores: first {:?}, last {:?} ({})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        starts[0],
        starts[starts.len() - 1],
        load()
    );

    let all: Vec<usize> = (0..NODES).collect();
    edits(&hosts, &all, &etcd, "1,000 policies, ten hosts");
    for h in &hosts {
        println!(
            "memory {}: VmRSS {} KiB, VmHWM {} KiB",
            h.name,
            h.proc_kb("VmRSS:"),
            h.proc_kb("VmHWM:")
        );
    }

    etcd.stop();
    wait("all disconnected", || {
        hosts
            .iter()
            .all(|h| h.status()["datastore"]["state"] == "disconnected")
    });
    let t = Instant::now();
    etcd.resume();
    let back = arrivals(&hosts, t, 0, "reconnect", |h| {
        h.status()["datastore"]["state"] == "connected"
    });
    println!(
        "reconnect after etcd restart (from its health check passing): first {:?}, last {:?} (backoff capped at 10 s; {})",
        back[0],
        back[back.len() - 1],
        load()
    );

    // S scale: the same fleet with ten policies.
    hosts[0].work.write_policy_files(&files(10));
    let dir = hosts[0].work.policy_dir();
    let push = hostfw_etcd(
        &hosts[0].ns,
        &hosts[0].work,
        "n00",
        &etcd,
        &["datastore", "push", "--prune", dir.to_str().unwrap()],
    );
    assert_eq!(push.code, 0, "{push:?}");
    wait("S set everywhere", || {
        hosts.iter().all(|h| h.policy_count() == 11)
    });
    edits(&hosts, &all, &etcd, "10 policies, ten hosts");

    for h in &mut hosts {
        if let Some(mut c) = h.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
