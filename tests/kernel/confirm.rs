//! `apply --confirm` and `hostfw confirm` with real traffic in network namespaces (both
//! backends): unconfirmed → the previous rules come back by themselves, and a port closed in
//! both states is never seen open during the rollback; confirmed → the new rules stay; the
//! watcher survives the session that started it being killed.

use crate::netns;

use netns::*;
use std::process::Command;
use std::time::{Duration, Instant};

const NODE: &str = "hfw-confirm";
/// The confirmation window: long enough that the checks right after `apply --confirm` still
/// see the new rules on a loaded machine.
const WINDOW: &str = "8";
/// "Eventually" for the rollback: far beyond the deadline, never a timing assertion.
const EVENTUALLY: Duration = Duration::from_secs(40);
/// Open in the old (confirmed) state only.
const OLD_PORT: u16 = 8080;
/// Open in the new (unconfirmed) state only.
const NEW_PORT: u16 = 7070;
/// Closed in both states: seeing it open means an intermediate state was more open than both.
const CLOSED_PORT: u16 = 9090;

fn policy(port: u16) -> String {
    format!(
        r#"{}---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: h-eth0
  labels: {{role: web}}
spec:
  interfaceName: eth0
  node: {NODE}
  expectedIPs: ["{HOST4}"]
"#,
        allow_ports_policy(&format!("only-{port}"), &port.to_string())
    )
}

struct Case {
    pair: Pair,
    work: Workdir,
    backend: &'static str,
    _servers: Vec<Server>,
}

impl Case {
    /// Host with servers on the three ports, the "open OLD_PORT" policy applied (confirmed
    /// state), the "open NEW_PORT" policy written (not applied yet).
    fn new(tag: &str, backend: &'static str) -> Case {
        let pair = Pair::new(&format!("cf{tag}-{backend}"));
        let servers = [OLD_PORT, NEW_PORT, CLOSED_PORT]
            .map(|p| tcp_server(&pair.host, sock("::", p)))
            .into_iter()
            .collect();
        let work = Workdir::new();
        work.write_policies(&policy(OLD_PORT));
        let c = Case {
            pair,
            work,
            backend,
            _servers: servers,
        };
        let run = c.run(&["apply"]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(c.open(OLD_PORT), "old state: {OLD_PORT} open");
        assert!(!c.open(NEW_PORT), "old state: {NEW_PORT} closed");
        assert!(!c.open(CLOSED_PORT), "old state: {CLOSED_PORT} closed");
        // The new policy closes OLD_PORT and opens NEW_PORT.
        c.work.write_policies(&policy(NEW_PORT));
        c
    }

    fn run(&self, args: &[&str]) -> HostfwRun {
        hostfw(&self.pair.host, &self.work, NODE, self.backend, args)
    }

    fn open(&self, port: u16) -> bool {
        tcp_ok(&self.pair.peer, None, sock(HOST4, port))
    }

    fn run_dir(&self) -> std::path::PathBuf {
        self.work.dir.path().join("run")
    }
}

fn watcher_pid(stdout: &str) -> u32 {
    stdout
        .split("watcher pid ")
        .nth(1)
        .and_then(|rest| {
            rest.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no watcher pid in: {stdout}"))
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/PID; only its state tells it has exited.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "not within {EVENTUALLY:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn unconfirmed_rolls_back(backend: &'static str) {
    let c = Case::new("rb", backend);
    let run = c.run(&["apply", "--confirm", WINDOW]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("hostfw confirm"), "{run:?}");
    assert!(c.run_dir().join("confirm-pending.json").exists());
    assert!(!c.open(OLD_PORT), "the new rules close {OLD_PORT}");
    assert!(c.open(NEW_PORT), "the new rules open {NEW_PORT}");
    // Until the old rules are back, keep probing the port both states close: a rollback that
    // removes the new rules before the old ones are in place shows it open.
    eventually("OLD_PORT open again after the rollback", || {
        assert!(
            !c.open(CLOSED_PORT),
            "{CLOSED_PORT} seen open while rolling back: the host was more open than both states"
        );
        c.open(OLD_PORT)
    });
    assert!(
        !c.open(CLOSED_PORT),
        "the rollback restored the old rules, not nothing"
    );
    assert!(!c.open(NEW_PORT), "the rollback removed the new rules");
    eventually("pending file removed", || {
        !c.run_dir().join("confirm-pending.json").exists()
    });
    // The rollback is recorded (a daemon stays paused until the policies change).
    assert!(c.run_dir().join("confirm-rolled-back.json").exists());
    let late = c.run(&["confirm"]);
    assert_eq!(late.code, 1, "{late:?}");
    assert!(late.stderr.contains("too late"), "{late:?}");
    // The restored state is exactly the old policy's render: diff against it is empty.
    c.work.write_policies(&policy(OLD_PORT));
    let diff = c.run(&["diff"]);
    assert_eq!(
        diff.code, 0,
        "restored state differs from the old render: {diff:?}"
    );
    // An explicit apply lifts the hold.
    let applied = c.run(&["apply"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(!c.run_dir().join("confirm-rolled-back.json").exists());
}

fn confirmed_stays(backend: &'static str) {
    let c = Case::new("ok", backend);
    let run = c.run(&["apply", "--confirm", WINDOW]);
    assert_eq!(run.code, 0, "{run:?}");
    let pid = watcher_pid(&run.stdout);
    // `status` shows the pending confirmation even without a daemon (which makes it exit 2).
    let status = c.run(&["status"]);
    assert!(
        status.stdout.contains("confirmation pending: rollback in"),
        "{status:?}"
    );
    let confirmed = c.run(&["confirm"]);
    assert_eq!(confirmed.code, 0, "{confirmed:?}");
    eventually("the watcher exits after the confirmation", || !alive(pid));
    assert!(!c.open(OLD_PORT), "confirmed rules stay: {OLD_PORT} closed");
    assert!(c.open(NEW_PORT), "confirmed rules stay: {NEW_PORT} open");
    assert!(
        !c.open(CLOSED_PORT),
        "confirmed rules stay: {CLOSED_PORT} closed"
    );
    let again = c.run(&["confirm"]);
    assert_eq!(again.code, 1, "nothing left to confirm: {again:?}");
}

fn watcher_survives_session_kill(backend: &'static str) {
    let c = Case::new("kill", backend);
    let root = c.work.dir.path();
    // A "session": a shell in its own process group running the apply, then lingering like a
    // login shell would.
    let script = format!(
        "ip netns exec {ns} {exe} --policy-dir {pol} --node {NODE} --backend {backend} \
         --run-dir {run} --state-dir {state} apply --confirm {WINDOW} > {out} 2>&1; sleep 60",
        ns = c.pair.host.name,
        exe = env!("CARGO_BIN_EXE_hostfw"),
        pol = c.work.policy_dir().display(),
        run = root.join("run").display(),
        state = root.join("state").display(),
        out = root.join("apply.out").display(),
    );
    let mut session = {
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .spawn()
            .expect("spawn session")
    };
    let out_path = root.join("apply.out");
    eventually("apply --confirm finished in the session", || {
        std::fs::read_to_string(&out_path).is_ok_and(|s| s.contains("watcher pid"))
    });
    let pid = watcher_pid(&std::fs::read_to_string(&out_path).expect("apply output"));
    let pgid = nix::unistd::Pid::from_raw(session.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGHUP);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = session.wait();
    assert!(alive(pid), "the watcher died with the session");
    assert!(!c.open(OLD_PORT));
    eventually("the orphaned watcher rolls back", || c.open(OLD_PORT));
    eventually("the watcher exits after the rollback", || !alive(pid));
    assert!(!c.run_dir().join("confirm-pending.json").exists());
}

on_both_backends!(unconfirmed_rolls_back);
on_both_backends!(confirmed_stays);
on_both_backends!(watcher_survives_session_kill);
