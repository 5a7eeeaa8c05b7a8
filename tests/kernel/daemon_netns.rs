//! `hostfw run` against the real kernel, inside network namespaces: READY over a notify socket
//! the test binds, live edits reaching the kernel (checked with traffic), invalid edits keeping
//! the rules, directory swaps, SIGHUP, SIGTERM leaving the rules, kill -9 and restart never
//! opening a denied port, boot from the last good set, tamper repair, an edit applied while a
//! drift check's read hangs, and an expectedIPs-only endpoint following an interface added
//! after start.
//!
//! Waits are bounded polls ("within 10 s"), never assertions about how fast something was.

use crate::netns;

use netns::{
    felix_configuration, hostfw_command, insert_above_hook, kernel_tests_enabled,
    pair_with_policies, sock, tcp_ok, tcp_server, veth, Netns, Pair, Workdir, HOST4,
};
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub(crate) const NODE: &str = "h";
pub(crate) const BACKEND: &str = "legacy";
/// Upper bound for anything the daemon should do "soon"; generous for a loaded CI machine.
const WITHIN: Duration = Duration::from_secs(15);

/// eth0 of node h, labelled web; web may receive TCP 8080 only. Failsafes off so no other port
/// is open by default. Refresh and post-write checks far away unless a test wants them.
pub(crate) fn base_policies(felix_extra: &str) -> String {
    format!(
        r#"apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: h-eth0
  labels:
    role: web
spec:
  node: h
  interfaceName: eth0
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-8080
spec:
  selector: role == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [8080]
  egress:
  - action: Allow
{}"#,
        felix_configuration(&format!(
            "  failsafeInboundHostPorts: []\n  failsafeOutboundHostPorts: []\n{felix_extra}"
        ))
    )
}

pub(crate) const ALLOW_9090: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-9090
spec:
  selector: role == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [9090]
"#;

pub(crate) const BROKEN: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: broken
spec:
  selector: role == 'web'
  ingress:
  - action: Alow
"#;

/// Write `text` to `dir/name` the way editors and config tools do: temp file, then rename.
pub(crate) fn put(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Poll `cond` until it holds or `WITHIN` passes.
fn eventually(cond: impl FnMut() -> bool) -> bool {
    netns::eventually(WITHIN, cond)
}

/// A host/peer pair named `tag` and a policy directory holding `base_policies(extra)`; None
/// when kernel tests are off (the test then returns).
fn gated_base_policies(tag: &str, extra: &str) -> Option<(Pair, Workdir)> {
    kernel_tests_enabled().then(|| pair_with_policies(tag, &base_policies(extra)))
}

/// A running `hostfw run` inside a namespace, with the notify socket it reports to.
pub(crate) struct Daemon {
    child: Child,
    notify: UnixDatagram,
    log: PathBuf,
    pub(crate) run_dir: PathBuf,
}

impl Daemon {
    fn start(ns: &Netns, work: &Workdir) -> Daemon {
        Daemon::start_with_env(ns, work, &[])
    }

    /// Started, and has told systemd it is ready (the first apply is done).
    pub(crate) fn ready(ns: &Netns, work: &Workdir) -> Daemon {
        let mut d = Daemon::start(ns, work);
        d.expect_notify("READY=1");
        d
    }

    pub(crate) fn start_with_env(ns: &Netns, work: &Workdir, env: &[(&str, &str)]) -> Daemon {
        let root = work.dir.path();
        let sock_path = root.join(format!("notify-{}", nix_time_tag()));
        let notify = UnixDatagram::bind(&sock_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let log = root.join(format!("daemon-{}.log", nix_time_tag()));
        let run_dir = root.join("run");
        let child = hostfw_command(ns, work, NODE, BACKEND, &["run"])
            .env("NOTIFY_SOCKET", &sock_path)
            .env("RUST_LOG", "debug")
            .env_remove("WATCHDOG_USEC")
            .env_remove("HOSTFW_LOCKOUT_GUARD")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            notify,
            log,
            run_dir,
        }
    }

    /// Wait for a notification line equal to `want` (e.g. "READY=1").
    fn expect_notify(&mut self, want: &str) {
        let end = Instant::now() + WITHIN;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.lines().any(|l| l == want) {
                    return;
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("daemon exited ({st}) before {want}:\n{}", self.log_text());
            }
        }
        panic!("no {want} within {WITHIN:?}:\n{}", self.log_text());
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        fs::read_to_string(self.run_dir.join("status.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    pub(crate) fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Wait for the exit status (bounded).
    fn wait_exit(&mut self) -> i32 {
        let end = Instant::now() + WITHIN;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not exit:\n{}", self.log_text());
    }

    pub(crate) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times `line` occurs in the log so far.
    fn logged(&self, line: &str) -> usize {
        self.log_text().matches(line).count()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Record a pending `apply --confirm` (ten minutes left) in `run_dir`: the daemon holds off.
pub(crate) fn hold_with_pending_confirmation(run_dir: &Path) {
    let now = hostfw::confirm::now_unix();
    let pending = hostfw::confirm::Pending {
        token: "test".into(),
        created_unix: now,
        deadline_unix: now + 600,
        seconds: 600,
        backend: BACKEND.into(),
        watcher_pid: None,
        deadline_boot_ms: None,
        source_revision: None,
    };
    hostfw::confirm::write_pending(run_dir, &pending).expect("write the pending confirmation");
}

/// A `PATH` that finds a shell script `script(tool)` (in a directory of `work`) for each of
/// `tools` before the real one.
fn wrapped_tools(work: &Workdir, tools: &[&str], script: impl Fn(&str) -> String) -> String {
    use std::os::unix::fs::PermissionsExt;
    let wrappers = work.new_dir("wrappers");
    for tool in tools {
        let path = wrappers.join(tool);
        fs::write(&path, format!("#!/bin/sh\n{}\n", script(tool))).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!(
        "{}:{}",
        wrappers.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Distinct file names for successive daemons of one test.
fn nix_time_tag() -> String {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{}", N.fetch_add(1, Ordering::SeqCst))
}

fn save(ns: &Netns) -> String {
    netns::save(ns, BACKEND, false, "filter", false)
}

#[test]
fn edits_reach_the_kernel_invalid_edits_do_not_and_stop_leaves_rules() {
    let Some((pair, work)) = gated_base_policies("dmn-edit", "") else {
        return;
    };
    let dir = work.policy_dir();
    let _s1 = tcp_server(&pair.host, sock(HOST4, 8080));
    let _s2 = tcp_server(&pair.host, sock(HOST4, 9090));
    let mut d = Daemon::ready(&pair.host, &work);
    assert!(
        tcp_ok(&pair.peer, None, sock(HOST4, 8080)),
        "{}",
        d.log_text()
    );
    assert!(
        !tcp_ok(&pair.peer, None, sock(HOST4, 9090)),
        "{}",
        d.log_text()
    );
    assert_eq!(d.status()["state"], "ok");
    assert_eq!(d.status()["policy"]["generation"], 1);
    // The writer lock is free between reconciles: `hostfw diff` runs beside the daemon and
    // finds the kernel in sync.
    let diff = netns::hostfw(&pair.host, &work, NODE, BACKEND, &["diff"]);
    assert_eq!(diff.code, 0, "{diff:?}");

    // A new file renamed into the directory opens 9090.
    put(&dir, "20-allow-9090.yaml", ALLOW_9090);
    assert!(
        eventually(|| tcp_ok(&pair.peer, None, sock(HOST4, 9090))),
        "{}",
        d.log_text()
    );
    assert!(eventually(|| d.status()["policy"]["generation"] == 2));

    // An invalid file: diagnostics in status, rules unchanged.
    put(&dir, "30-broken.yaml", BROKEN);
    assert!(
        eventually(|| d.status()["state"] == "degraded"),
        "{}",
        d.log_text()
    );
    let status = d.status();
    let diags = status["diagnostics"].as_array().unwrap();
    assert!(
        diags
            .iter()
            .any(|x| x["file"].as_str().unwrap_or("").ends_with("30-broken.yaml")),
        "{status:#}"
    );
    assert_eq!(status["policy"]["generation"], 2);
    assert!(tcp_ok(&pair.peer, None, sock(HOST4, 9090)));
    assert!(tcp_ok(&pair.peer, None, sock(HOST4, 8080)));

    // Fixing it (removing the file) returns to ok; 9090 stays open.
    fs::remove_file(dir.join("30-broken.yaml")).unwrap();
    assert!(
        eventually(|| d.status()["state"] == "ok"),
        "{}",
        d.log_text()
    );
    assert!(d.status()["diagnostics"].as_array().unwrap().is_empty());

    // SIGHUP: a reload announced to systemd.
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.expect_notify("RELOADING=1");
    d.expect_notify("READY=1");

    // SIGTERM: STOPPING, exit 0, rules stay.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.expect_notify("STOPPING=1");
    assert_eq!(d.wait_exit(), 0, "{}", d.log_text());
    assert!(save(&pair.host).contains(":cali-"));
    assert!(tcp_ok(&pair.peer, None, sock(HOST4, 9090)));
    assert!(!tcp_ok(&pair.peer, None, sock(HOST4, 7070)));
}

#[test]
fn status_reports_live_per_policy_counters() {
    let Some((pair, work)) = gated_base_policies("dmn-count", "") else {
        return;
    };
    let _s = tcp_server(&pair.host, sock(HOST4, 8080));
    let d = Daemon::ready(&pair.host, &work);
    assert!(tcp_ok(&pair.peer, None, sock(HOST4, 8080)));
    let out = pair.host.exec(&[
        env!("CARGO_BIN_EXE_hostfw"),
        "--run-dir",
        d.run_dir.to_str().unwrap(),
        "status",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counters = v["counters"].as_array().unwrap_or_else(|| panic!("{v:#}"));
    let inbound = counters
        .iter()
        .find(|c| c["policy"] == "allow-8080" && c["direction"] == "inbound")
        .unwrap_or_else(|| panic!("{v:#}"));
    // At least the SYN of the accepted connection went through the policy and matched its rule.
    assert!(
        inbound["matched"]["packets"].as_u64().unwrap() >= 1,
        "{v:#}"
    );
    assert!(
        inbound["evaluated"]["packets"].as_u64().unwrap() >= 1,
        "{v:#}"
    );
}

#[test]
fn lockout_guard_warns_by_default_and_refuses_when_asked() {
    // The base policies admit no SSH on eth0 (failsafes off): the guard's "unreachable" case.
    let Some((pair, work)) = gated_base_policies("dmn-guard", "") else {
        return;
    };
    let mut d = Daemon::ready(&pair.host, &work);
    assert_eq!(d.status()["state"], "ok");
    assert!(d.log_text().contains("lockout guard: "), "{}", d.log_text());
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit(), 0);

    let fresh = Pair::new("dmn-guard2");
    let mut d = Daemon::start_with_env(&fresh.host, &work, &[("HOSTFW_LOCKOUT_GUARD", "refuse")]);
    d.expect_notify("READY=1");
    let status = d.status();
    assert_eq!(status["state"], "degraded", "{status:#}");
    let diags = status["diagnostics"].as_array().unwrap();
    assert!(
        diags.iter().any(|x| x["message"]
            .as_str()
            .unwrap_or("")
            .contains("lockout guard")),
        "{status:#}"
    );
}

#[test]
fn replacing_the_whole_directory_converges() {
    let Some((pair, work)) = gated_base_policies("dmn-swap", "") else {
        return;
    };
    let _s = tcp_server(&pair.host, sock(HOST4, 9090));
    let d = Daemon::ready(&pair.host, &work);
    assert!(!tcp_ok(&pair.peer, None, sock(HOST4, 9090)));

    let dir = work.policy_dir();
    let staged = work.new_dir("policies.new");
    fs::write(staged.join("policies.yaml"), base_policies("")).unwrap();
    fs::write(staged.join("20-allow-9090.yaml"), ALLOW_9090).unwrap();
    fs::rename(&dir, work.dir.path().join("policies.old")).unwrap();
    fs::rename(&staged, &dir).unwrap();
    assert!(
        eventually(|| tcp_ok(&pair.peer, None, sock(HOST4, 9090))),
        "{}",
        d.log_text()
    );

    // The watch follows the new directory: removing the file there closes 9090 again.
    fs::remove_file(dir.join("20-allow-9090.yaml")).unwrap();
    assert!(
        eventually(|| !tcp_ok(&pair.peer, None, sock(HOST4, 9090))),
        "{}",
        d.log_text()
    );
}

#[test]
fn kill9_and_restart_never_open_a_denied_port() {
    let Some((pair, work)) = gated_base_policies("dmn-kill", "") else {
        return;
    };
    let _s = tcp_server(&pair.host, sock(HOST4, 9090));
    let mut d = Daemon::ready(&pair.host, &work);
    assert!(!tcp_ok(&pair.peer, None, sock(HOST4, 9090)));

    // Probe 9090 continuously while the daemon is killed and restarted.
    let stop = AtomicBool::new(false);
    let opened = AtomicBool::new(false);
    let d2 = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                if tcp_ok(&pair.peer, None, sock(HOST4, 9090)) {
                    opened.store(true, Ordering::SeqCst);
                }
            }
        });
        d.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = d.wait_exit();
        let d2 = Daemon::ready(&pair.host, &work);
        // One more probe round after READY before stopping the prober.
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::SeqCst);
        d2
    });
    assert!(!opened.load(Ordering::SeqCst), "9090 opened during restart");
    assert_eq!(d2.status()["state"], "ok");
}

#[test]
fn boot_with_an_invalid_directory_applies_the_last_good_set() {
    if !kernel_tests_enabled() {
        return;
    }
    let work = Workdir::new();
    work.write_policies(&base_policies(""));
    {
        // A first life: applies and saves the last good set.
        let first = Pair::new("dmn-lg1");
        let mut d = Daemon::ready(&first.host, &work);
        d.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(d.wait_exit(), 0);
    }
    assert!(work
        .dir
        .path()
        .join("state/last-good/policies.yaml")
        .is_file());

    // "Reboot": a fresh namespace (no hostfw state in its kernel), and a broken directory.
    put(&work.policy_dir(), "30-broken.yaml", BROKEN);
    let pair = Pair::new("dmn-lg2");
    let _s1 = tcp_server(&pair.host, sock(HOST4, 8080));
    let _s2 = tcp_server(&pair.host, sock(HOST4, 9090));
    let d = Daemon::ready(&pair.host, &work);
    let status = d.status();
    assert_eq!(status["state"], "degraded", "{status:#}");
    assert_eq!(status["policy"]["origin"], "last-good", "{status:#}");
    assert!(!status["diagnostics"].as_array().unwrap().is_empty());
    assert!(tcp_ok(&pair.peer, None, sock(HOST4, 8080)));
    assert!(!tcp_ok(&pair.peer, None, sock(HOST4, 9090)));
}

#[test]
fn tampering_is_repaired_by_the_refresh() {
    let Some((pair, work)) = gated_base_policies("dmn-tamper", "  iptablesRefreshInterval: 1s\n")
    else {
        return;
    };
    let _s = tcp_server(&pair.host, sock(HOST4, 9090));
    let d = Daemon::ready(&pair.host, &work);
    assert!(!tcp_ok(&pair.peer, None, sock(HOST4, 9090)));

    // A foreign ACCEPT inserted above our hook opens 9090 until the hook is moved back on top.
    insert_above_hook(&pair.host, 9090, "ACCEPT");
    assert!(
        eventually(|| !tcp_ok(&pair.peer, None, sock(HOST4, 9090))),
        "{}",
        d.log_text()
    );
    // The foreign rule is still there (never ours to delete), below our hook.
    assert!(save(&pair.host).contains("--dport 9090 -j ACCEPT"));

    let repairs = || d.status()["drift_repairs"].as_u64().unwrap_or(0);
    let before = repairs();
    assert!(before >= 1, "{:#}", d.status());

    // Deleting our hook (now rule 1 of INPUT again) lets the foreign ACCEPT decide: restored.
    let input = pair.host.must(&["iptables-legacy", "-S", "INPUT"]);
    assert!(
        input
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("-j cali-INPUT")),
        "our hook is not first: {input}"
    );
    pair.host.must(&["iptables-legacy", "-D", "INPUT", "1"]);
    assert!(
        eventually(|| repairs() > before && !tcp_ok(&pair.peer, None, sock(HOST4, 9090))),
        "{}",
        d.log_text()
    );

    // Refreshes that find the kernel as the last in-sync one did plan nothing (quiet checks);
    // what follows is found by such a check all the same.
    let quiet = || d.logged("the kernel reads as it did when last in sync");
    let so_far = quiet();
    assert!(eventually(|| quiet() > so_far), "{}", d.log_text());

    // Flushing one of our chains is repaired too.
    let before = repairs();
    pair.host.must(&["iptables-legacy", "-F", "cali-INPUT"]);
    assert!(eventually(|| repairs() > before), "{}", d.log_text());
    assert!(save(&pair.host).contains("-A cali-INPUT"));

    // A rule of ours rewritten in place (`iptables -R`) with its hash and target kept, 8080
    // widened to 9090: hashes alone see nothing, the remembered text does (the refresh reads
    // on the daemon's helper thread and judges the read as it comes in).
    let listed = save(&pair.host);
    let rule = listed
        .lines()
        .find(|l| l.starts_with("-A cali-pi-") && l.contains("--dports 8080"))
        .expect("allow-8080's rule");
    let chain = rule.split_whitespace().nth(1).expect("chain name");
    let index = listed
        .lines()
        .filter(|l| l.starts_with(&format!("-A {chain} ")))
        .position(|l| l == rule)
        .expect("the rule in its chain")
        + 1;
    let replaced = rule
        .replacen(&format!("-A {chain}"), &format!("-R {chain} {index}"), 1)
        .replace("--dports 8080", "--dports 9090");
    let so_far = quiet();
    assert!(eventually(|| quiet() > so_far), "{}", d.log_text());
    let before = repairs();
    pair.host
        .must(&["sh", "-c", &format!("iptables-legacy {replaced}")]);
    assert!(
        eventually(|| repairs() > before && save(&pair.host).contains(rule)),
        "{}",
        d.log_text()
    );
    assert!(!tcp_ok(&pair.peer, None, sock(HOST4, 9090)));
}

#[test]
fn expected_ips_endpoint_follows_an_interface_added_after_start() {
    if !kernel_tests_enabled() {
        return;
    }
    // Timers far away: only the netlink notification can make the daemon notice in time.
    let (pair, work) = pair_with_policies(
        "dmn-iface",
        &(base_policies(
            "  iptablesRefreshInterval: 600s\n  iptablesPostWriteCheckInterval: 600s\n",
        ) + r#"---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: h-by-ip
  labels:
    role: web
spec:
  node: h
  expectedIPs: ["203.0.113.1"]
"#),
    );
    let d = Daemon::ready(&pair.host, &work);

    // A second link appears, carrying the expected IP.
    let other = Netns::new("dmn-iface-o");
    veth(&pair.host, "eth1", &other, "eth1");
    pair.host.addr("eth1", "203.0.113.1/24");
    other.addr("eth1", "203.0.113.2/24");
    let _s1 = tcp_server(&pair.host, sock("203.0.113.1", 8080));
    let _s2 = tcp_server(&pair.host, sock("203.0.113.1", 9090));
    // The endpoint now governs eth1: its chains appear, and only 8080 gets through.
    assert!(
        eventually(|| save(&pair.host).contains(":cali-fh-eth1 ")),
        "{}",
        d.log_text()
    );
    assert!(
        !tcp_ok(&other, None, sock("203.0.113.1", 9090)),
        "{}",
        d.log_text()
    );
    assert!(tcp_ok(&other, None, sock("203.0.113.1", 8080)));
}

/// A pending `apply --confirm` owns the kernel: the daemon loads an edit but does not write it
/// while the confirmation is pending (that would undo or pre-empt the rollback), and applies it
/// once the confirmation is gone.
#[test]
fn a_pending_confirmation_pauses_reconciliation() {
    let Some((pair, work)) = gated_base_policies("dmn-hold", "") else {
        return;
    };
    let dir = work.policy_dir();
    let _s = tcp_server(&pair.host, sock(HOST4, 9090));
    let d = Daemon::ready(&pair.host, &work);
    assert!(!tcp_ok(&pair.peer, None, sock(HOST4, 9090)));

    hold_with_pending_confirmation(&d.run_dir);
    put(&dir, "20-allow-9090.yaml", ALLOW_9090);
    assert!(
        eventually(|| d.log_text().contains("not reconciling")),
        "{}",
        d.log_text()
    );
    assert!(
        !tcp_ok(&pair.peer, None, sock(HOST4, 9090)),
        "the edit reached the kernel during a pending confirmation: {}",
        d.log_text()
    );

    fs::remove_file(d.run_dir.join(hostfw::confirm::PENDING_FILE)).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        eventually(|| tcp_ok(&pair.peer, None, sock(HOST4, 9090))),
        "{}",
        d.log_text()
    );
}

/// Attack: `iptables-restore` hangs (a wrapper that never reads its input). SIGTERM used to wait
/// for the child's deadline (minutes, past systemd's stop timeout); the daemon now kills the
/// child and exits at once.
#[test]
fn sigterm_kills_a_hung_restore() {
    let Some((pair, work)) = gated_base_policies("dmn-hung", "") else {
        return;
    };
    let marker = work.dir.path().join("hung.pid");
    let script = format!("echo $$ > {}\nexec sleep 600", marker.display());
    let path = wrapped_tools(
        &work,
        &["iptables-legacy-restore", "ip6tables-legacy-restore"],
        |_| script.clone(),
    );
    let mut d = Daemon::start_with_env(&pair.host, &work, &[("PATH", &path)]);
    assert!(
        eventually(|| fs::read_to_string(&marker).is_ok_and(|t| !t.trim().is_empty())),
        "the restore never started: {}",
        d.log_text()
    );
    let hung: i32 = fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit();
    let gone =
        eventually(|| nix::sys::signal::kill(nix::unistd::Pid::from_raw(hung), None).is_err());
    assert!(gone, "the hung restore (pid {hung}) outlived the daemon");
}

const ALLOW_SSH: &str =
    "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  \
    name: allow-ssh\nspec:\n  selector: role == 'web'\n  ingress:\n  - action: Allow\n    \
    protocol: TCP\n    destination:\n      ports: [22]\n";

/// Attack: with the daemon running, a saved edit that cuts off the admin's SSH session used to
/// be in force within a second (the guard only logged), before `apply --confirm` could help.
/// By default the daemon now keeps the rules in force, reports the finding and stays degraded.
/// A drift check whose read of the kernel hangs (the save tools wrapped to sleep when called
/// for a whole-kernel read, as a check reads) does not hold up an edit: the edit is applied
/// while the read hangs, the hung save tools are killed, and checks go on once saves work.
#[test]
fn an_edit_during_a_hung_drift_check_is_applied_and_the_read_called_off() {
    let Some((pair, work)) = gated_base_policies("dmn-slowchk", "  iptablesRefreshInterval: 1s\n")
    else {
        return;
    };
    let hang = work.dir.path().join("hang");
    let pids = work.dir.path().join("hung.pids");
    let path = wrapped_tools(
        &work,
        &["iptables-legacy-save", "ip6tables-legacy-save"],
        |tool| {
            let real = netns::which(tool).unwrap_or_else(|| panic!("{tool} is not installed"));
            format!(
                "if [ -e {hang} ] && [ $# -eq 0 ]; then\n\
                 echo $$ >> {pids}; exec sleep 600\n\
                 fi\n\
                 exec {real} \"$@\"",
                hang = hang.display(),
                pids = pids.display(),
                real = real.display(),
            )
        },
    );
    let _s = tcp_server(&pair.host, sock(HOST4, 9090));
    let mut d = Daemon::start_with_env(&pair.host, &work, &[("PATH", &path)]);
    d.expect_notify("READY=1");
    assert!(!tcp_ok(&pair.peer, None, sock(HOST4, 9090)));

    fs::write(&hang, "").unwrap();
    assert!(
        eventually(|| fs::read_to_string(&pids).is_ok_and(|t| !t.trim().is_empty())),
        "no refresh read the kernel: {}",
        d.log_text()
    );
    put(&work.policy_dir(), "20-allow-9090.yaml", ALLOW_9090);
    assert!(
        eventually(|| d.status()["policy"]["generation"] == 2
            && tcp_ok(&pair.peer, None, sock(HOST4, 9090))),
        "the edit waited for the hung read: {}",
        d.log_text()
    );
    let hung: Vec<i32> = fs::read_to_string(&pids)
        .unwrap()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let alive = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    assert!(
        eventually(|| !hung.iter().copied().any(alive)),
        "the hung save tools {hung:?} outlived the edit: {}",
        d.log_text()
    );

    // Saves work again: the refresh reads, finds the kernel in sync, and nothing is repaired.
    fs::remove_file(&hang).unwrap();
    let reads = || d.logged("the drift check's read of the kernel is done");
    let before = reads();
    assert!(eventually(|| reads() > before), "{}", d.log_text());
    assert_eq!(d.status()["state"], "ok", "{:#}", d.status());
    assert_eq!(d.status()["drift_repairs"], 0, "{:#}", d.status());
    assert!(tcp_ok(&pair.peer, None, sock(HOST4, 9090)));
}

#[test]
fn the_daemon_refuses_an_edit_that_cuts_off_a_session() {
    let Some(cut) = CutOff::refused("dmn-cut") else {
        return;
    };
    let status = cut.daemon.status();
    assert!(
        status["diagnostics"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["message"]
                .as_str()
                .unwrap_or("")
                .contains("lockout guard"))),
        "{status:#}"
    );
}

/// An admin's SSH session (an established connection from the peer to a listener on 22 that
/// keeps it open, like sshd) and a daemon that refused the edit removing the policy allowing
/// SSH: status degraded, new logins still admitted.
struct CutOff {
    pair: Pair,
    work: Workdir,
    daemon: Daemon,
    _session: (std::net::TcpStream, std::net::TcpStream),
}

impl CutOff {
    /// None when kernel tests are off.
    fn refused(tag: &str) -> Option<CutOff> {
        let (pair, work) = gated_base_policies(tag, "")?;
        let dir = work.policy_dir();
        put(&dir, "20-allow-ssh.yaml", ALLOW_SSH);
        let listener = pair
            .host
            .run_in(|| std::net::TcpListener::bind(sock(HOST4, 22)).expect("bind 22"));
        let daemon = Daemon::ready(&pair.host, &work);
        let session = pair.peer.run_in(|| {
            std::net::TcpStream::connect_timeout(&sock(HOST4, 22), Duration::from_secs(2))
                .expect("ssh session")
        });
        let (server_end, _) = listener.accept().expect("accept the session");
        fs::remove_file(dir.join("20-allow-ssh.yaml")).unwrap();
        assert!(
            eventually(|| daemon.status()["state"] == "degraded"),
            "{}",
            daemon.log_text()
        );
        let cut = CutOff {
            pair,
            work,
            daemon,
            _session: (session, server_end),
        };
        assert!(
            cut.login(),
            "the edit reached the kernel: {}",
            cut.daemon.log_text()
        );
        Some(cut)
    }

    /// Whether a new login from the peer gets through the handshake.
    fn login(&self) -> bool {
        self.pair.peer.run_in(|| {
            std::net::TcpStream::connect_timeout(&sock(HOST4, 22), Duration::from_secs(2)).is_ok()
        })
    }
}

/// Attack: every policy file disappears (the window between `rm old.yaml` and the new file, or
/// an emptied directory). The daemon used to apply "nothing" within 100 ms, opening the host; it
/// now keeps the rules in force and reports the refusal, naming `hostfw flush`.
#[test]
fn the_daemon_keeps_the_rules_when_the_set_empties() {
    let Some((pair, work)) = gated_base_policies("dmn-empty", "") else {
        return;
    };
    let _s = tcp_server(&pair.host, sock(HOST4, 9090));
    let d = Daemon::ready(&pair.host, &work);
    assert!(!tcp_ok(&pair.peer, None, sock(HOST4, 9090)));
    let dir = work.policy_dir();
    for entry in fs::read_dir(&dir).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    assert!(
        eventually(|| d.status()["diagnostics"]
            .as_array()
            .is_some_and(|a| a
                .iter()
                .any(|x| x["message"].as_str().unwrap_or("").contains("hostfw flush")))),
        "{}",
        d.log_text()
    );
    assert!(
        !tcp_ok(&pair.peer, None, sock(HOST4, 9090)),
        "the empty set opened the host: {}",
        d.log_text()
    );
}

/// Attack: the run directory fills up (a 64 KiB tmpfs in a private mount namespace, filled
/// with a zero file). The daemon keeps enforcing newer generations but cannot rewrite
/// `status.json`; `hostfw status` used to report the old generation as current. It now calls
/// the file stale, and the daemon's log says it cannot write it.
#[test]
fn a_full_run_dir_makes_status_say_it_is_stale() {
    let Some((pair, work)) = gated_base_policies("dmn-full", "") else {
        return;
    };
    let run_dir = work.new_dir("run");
    let log = work.dir.path().join("daemon-full.log");
    let hostfw = hostfw_command(&pair.host, &work, NODE, BACKEND, &["run"]);
    let argv: Vec<String> = std::iter::once(hostfw.get_program())
        .chain(hostfw.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let script = format!(
        "mount -t tmpfs -o size=64k,mode=0700 tmpfs {} && exec \"$@\"",
        run_dir.display()
    );
    let mut child = std::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .args(&argv)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let in_ns = |argv: &[&str]| {
        std::process::Command::new("nsenter")
            .args(["-t", &pid, "-m", "--"])
            .args(argv)
            .output()
            .unwrap()
    };
    let status_file = run_dir.join("status.json").display().to_string();
    assert!(
        eventually(
            || String::from_utf8_lossy(&in_ns(&["cat", &status_file]).stdout)
                .contains("\"generation\": 1")
        ),
        "generation 1 never reported: {}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    let fill = format!("of={}/fill", run_dir.display());
    in_ns(&["dd", "if=/dev/zero", &fill, "bs=4k", "count=64"]);
    put(&work.policy_dir(), "20-allow-9090.yaml", ALLOW_9090);
    let _s = tcp_server(&pair.host, sock(HOST4, 9090));
    assert!(
        eventually(|| tcp_ok(&pair.peer, None, sock(HOST4, 9090))),
        "the edit was not applied: {}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    let status = hostfw_command(&pair.host, &work, NODE, BACKEND, &["status"]);
    let status_argv: Vec<String> = std::iter::once(status.get_program())
        .chain(status.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let refs: Vec<&str> = status_argv.iter().map(String::as_str).collect();
    // Past the time the daemon may take to report an edit.
    let report = {
        let until = Instant::now() + Duration::from_secs(12);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
        }
        in_ns(&refs)
    };
    let text = String::from_utf8_lossy(&report.stdout).into_owned();
    assert!(text.contains("stale:"), "{text}");
    assert!(
        fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("cannot write"),
        "the daemon did not log the failure"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// With the daemon running, `apply --confirm` is the way through for an edit the daemon's guard
/// refused (it would cut off the admin's session): the apply enforces it under a deadline while
/// the daemon holds off, and `hostfw confirm` hands exactly that set to the daemon, which adopts
/// it (state ok, a new generation) instead of restoring the set it had; a SIGHUP, which re-reads
/// and repairs the kernel, keeps it.
#[test]
fn apply_confirm_hands_an_edit_the_daemon_refused_to_the_daemon() {
    let Some(cut) = CutOff::refused("dmn-handoff") else {
        return;
    };
    let d = &cut.daemon;
    let run = |args: &[&str]| netns::hostfw(&cut.pair.host, &cut.work, NODE, BACKEND, args);
    let apply = run(&["apply", "--force", "--confirm", "120"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(!cut.login(), "apply --confirm did not enforce the edit");
    let confirmed = run(&["confirm"]);
    assert_eq!(confirmed.code, 0, "{confirmed:?}");
    assert!(
        confirmed
            .stdout
            .contains("now holds the confirmed policy set"),
        "{confirmed:?}\n{}",
        d.log_text()
    );
    let status = d.status();
    assert_eq!(status["state"], "ok", "{status:#}\n{}", d.log_text());
    assert_eq!(status["policy"]["generation"], 2, "{status:#}");
    assert!(
        !cut.login(),
        "the daemon restored the set it had: {}",
        d.log_text()
    );

    let reloads = status["reloads"].as_u64().unwrap_or(0);
    d.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(eventually(
        || d.status()["reloads"].as_u64().unwrap_or(0) > reloads
    ));
    assert_eq!(d.status()["state"], "ok", "{}", d.log_text());
    assert!(
        !cut.login(),
        "a reload restored the refused set's predecessor: {}",
        d.log_text()
    );
}
