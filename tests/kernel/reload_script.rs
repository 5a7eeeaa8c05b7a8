//! `systemd/hostfw-reload`, the unit's ExecReload, against a real daemon in a namespace: when it
//! returns 0 an edit made just before is already in the kernel (a probe right after passes,
//! with no waiting), a tampered kernel is repaired (SIGHUP re-reads it), and an invalid
//! directory makes it exit 1 with the rules in force kept. It waits for status.json's `reloads`
//! counter, not for any rewrite: a status written for something else ends no wait.

use crate::netns::{
    allow_ports_policy, hostfw_command, insert_above_hook, kernel_tests_enabled,
    pair_with_policies, sock, tcp_ok, tcp_server, HOST4,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = "h";

/// eth0 of node h may receive TCP 8080 only (failsafes off, so nothing else is open); the
/// daemon's own re-reads of the kernel far away.
const BASE: &str = "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h-eth0, labels: {role: web}}
spec: {node: h, interfaceName: eth0}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-8080}
spec:
  selector: role == 'web'
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
  egress:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  failsafeInboundHostPorts: []
  failsafeOutboundHostPorts: []
  # Nothing but the reload may repair the kernel during the test.
  iptablesRefreshInterval: 600s
  iptablesPostWriteCheckInterval: 600s
";

const BROKEN: &str = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: broken}
spec:
  ingress:
  - action: Alow
";

/// The reload script run as systemd runs it: `hostfw-reload $MAINPID`, the run directory from
/// the environment file's variable.
fn reload(pid: u32, run_dir: &Path) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hostfw-reload");
    let out = Command::new(script)
        .arg(pid.to_string())
        .env("HOSTFW_RUN_DIR", run_dir)
        .env("HOSTFW_RELOAD_TIMEOUT", "30")
        .output()
        .expect("run hostfw-reload");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn reload_returns_after_the_edit_is_in_the_kernel_and_fails_on_an_invalid_one() {
    if !kernel_tests_enabled() {
        return;
    }
    let (pair, work) = pair_with_policies("reload", BASE);
    let run_dir = work.dir.path().join("run");
    let log = work.dir.path().join("daemon.log");
    let mut daemon = hostfw_command(&pair.host, &work, NODE, "legacy", &["run"])
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start hostfw run");
    // `ip netns exec` execs hostfw, so this is the daemon's own pid, as $MAINPID would be.
    let pid = daemon.id();
    let status = run_dir.join("status.json");
    let end = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&status).is_ok_and(|s| s.contains("\"state\": \"ok\"")) {
        assert!(Instant::now() < end, "daemon not ok within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    let _server = tcp_server(&pair.host, sock(HOST4, 9090));
    assert!(
        !tcp_ok(&pair.peer, None, sock(HOST4, 9090)),
        "9090 open before the edit"
    );

    // A plain write (the daemon waits for the file to be closed), then the reload.
    std::fs::write(
        work.policy_dir().join("allow-9090.yaml"),
        allow_ports_policy("allow-9090", "9090"),
    )
    .expect("write");
    let (code, text) = reload(pid, &run_dir);
    assert_eq!(code, 0, "{text}");
    assert!(
        tcp_ok(&pair.peer, None, sock(HOST4, 9090)),
        "reload returned before the edit reached the kernel"
    );

    // A reload is also a full repair pass: a foreign DROP inserted above hostfw's hook (which
    // the daemon's cached view of the kernel does not know about) is gone when it returns.
    insert_above_hook(&pair.host, 9090, "DROP");
    assert!(
        !tcp_ok(&pair.peer, None, sock(HOST4, 9090)),
        "the tamper did not take"
    );
    let (code, text) = reload(pid, &run_dir);
    assert_eq!(code, 0, "{text}");
    assert!(
        tcp_ok(&pair.peer, None, sock(HOST4, 9090)),
        "the reload did not repair the kernel"
    );

    std::fs::write(work.policy_dir().join("broken.yaml"), BROKEN).expect("write");
    let (code, text) = reload(pid, &run_dir);
    assert_eq!(code, 1, "an invalid directory must fail the reload: {text}");
    let counted = std::fs::read_to_string(&status).expect("status.json");
    assert!(
        counted.contains("\"reloads\": 3"),
        "three handled reloads are counted: {counted}"
    );
    assert!(text.contains("rules in force stay"), "{text}");
    assert!(
        tcp_ok(&pair.peer, None, sock(HOST4, 9090)),
        "the rules in force were lost"
    );

    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// A stand-in daemon (a shell ignoring nothing but handling SIGHUP) that writes status.json in
/// hostfw's layout, and on SIGHUP rewrites it with a new `updated` time and `reloads` set to
/// `$3`: the rewrite a drift check or debounced edit makes between the signal and the reload.
const FAKE_DAEMON: &str = r#"f=$1
write() {
	printf '{\n  "state": "ok",\n  "pid": %s,\n  "updated": "%s",\n  "last_error": null,\n  "reloads": %s\n}\n' $$ "$1" "$2" >"$f.tmp"
	mv "$f.tmp" "$f"
}
write 2026-01-01T00:00:00.000Z 0
trap 'write 2026-01-01T00:00:01.000Z "$2"' HUP
while :; do sleep 0.1; done
"#;

#[test]
fn reload_waits_for_the_reload_counter_not_for_any_rewrite() {
    for (reloads_after_signal, want_code, want_text) in
        [("0", 2, "no status from the daemon"), ("1", 0, "reloaded")]
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = dir.path().join("status.json");
        let mut fake = Command::new("sh")
            .args(["-c", FAKE_DAEMON, "fake-hostfw"])
            .arg(&status)
            .arg(reloads_after_signal)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the stand-in daemon");
        let end = Instant::now() + Duration::from_secs(15);
        while !status.exists() {
            assert!(Instant::now() < end, "stand-in daemon wrote no status");
            std::thread::sleep(Duration::from_millis(20));
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hostfw-reload");
        let out = Command::new(script)
            .arg(fake.id().to_string())
            .env("HOSTFW_RUN_DIR", dir.path())
            .env("HOSTFW_RELOAD_TIMEOUT", "2")
            .output()
            .expect("run hostfw-reload");
        let _ = fake.kill();
        let _ = fake.wait();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(want_code),
            "reloads {reloads_after_signal}: {text}"
        );
        assert!(
            text.contains(want_text),
            "reloads {reloads_after_signal}: {text}"
        );
    }
}
