//! `systemd/hostfw-reload`, the unit's ExecReload, against a real daemon in a namespace: when it
//! returns 0 an edit made just before is already in the kernel (a probe right after passes,
//! with no waiting), a tampered kernel is repaired (SIGHUP re-reads it), and an invalid
//! directory makes it exit 1 with the rules in force kept.

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
    assert!(text.contains("rules in force stay"), "{text}");
    assert!(
        tcp_ok(&pair.peer, None, sock(HOST4, 9090)),
        "the rules in force were lost"
    );

    let _ = daemon.kill();
    let _ = daemon.wait();
}
