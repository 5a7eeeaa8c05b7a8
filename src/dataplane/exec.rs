//! Running one child process: argv (never a shell), input on stdin, output collected, a hard
//! deadline after which the child is killed, and the failure sorted into a `DataplaneError`.
//! Two process-wide hooks for the daemon: `cancel_children` (SIGTERM: kill the running child
//! instead of waiting out its deadline) and `while_waiting` (a callback run every few seconds
//! while a child runs, so the daemon pings the systemd watchdog during a long restore).

use super::DataplaneError;
use crate::ruleset::restore::RestoreScript;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// No iptables or ipset call without input should take this long; a child that does is hung
/// (e.g. stuck on a lock another tool never releases) and is killed. Saving a very large table
/// through iptables-nft takes tens of seconds, hence the generous base; it stays below the
/// unit's `WatchdogSec=120s`, so a hung child is killed (and reported) before systemd kills the
/// daemon for missing its watchdog.
pub(crate) const CHILD_TIMEOUT: Duration = Duration::from_secs(90);

/// How often a wait for a child wakes to look at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// How often `while_waiting`'s callback runs while a child runs.
const WAITING_PING: Duration = Duration::from_secs(10);

/// Set once by `cancel_children`; never cleared (the process is stopping).
static CANCELLED: AtomicBool = AtomicBool::new(false);

/// The callback `while_waiting` installed.
static WAITING_HOOK: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// Kill the running child (if any) and refuse to start more: the daemon got SIGTERM. A restore
/// killed this way commits all of its transaction or none of it (the kernel swaps tables at
/// `COMMIT`), so the rules are the old or the new, never a mix.
pub fn cancel_children() {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Run `hook` about every 10 s while a child runs (the first call installs it; later calls
/// are ignored). The daemon pings its watchdog from it: a restore that legitimately runs long
/// is not mistaken for a hung daemon, and a hung child is still killed at its deadline.
pub fn while_waiting(hook: impl Fn() + Send + Sync + 'static) {
    let _ = WAITING_HOOK.set(Box::new(hook));
}

/// The deadline for a child fed `input`: the base plus one second per 100 KB, because
/// `iptables-nft-restore` of a 100,000-rule payload legitimately runs for tens of seconds.
pub(crate) fn timeout_for(input_bytes: usize) -> Duration {
    CHILD_TIMEOUT + Duration::from_secs(input_bytes as u64 / 100_000)
}

/// What a child is fed on stdin, owned: the thread that writes it may outlive the call.
enum Feed {
    /// A copy of the caller's text.
    Text(String),
    /// The script's shared pieces, written out as they are fed (`RestoreScript::write_out`),
    /// never whole.
    Script(RestoreScript),
}

/// What a finished child left behind.
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Look `name` up in `PATH` the way a shell would, without running a shell.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run `program args...` with `stdin` as input; wait at most `timeout`, less if
/// `cancel_children` is called.
pub(crate) fn run(
    program: &Path,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<Output, DataplaneError> {
    run_unless(program, args, stdin, timeout, &CANCELLED)
}

/// `run`, also killed early (or not started) once `cancel` is set: work a caller may call off.
pub(crate) fn run_unless(
    program: &Path,
    args: &[&str],
    stdin: Option<&str>,
    timeout: Duration,
    cancel: &AtomicBool,
) -> Result<Output, DataplaneError> {
    let feed = stdin.map(|text| Feed::Text(text.to_owned()));
    run_collecting(program, args, feed, timeout, cancel)
}

/// `run_unless` fed `script` as it is written out: the text of a large restore is never
/// whole in memory. The output is collected as `run_unless` collects it.
pub(crate) fn run_script_unless(
    program: &Path,
    args: &[&str],
    script: &RestoreScript,
    timeout: Duration,
    cancel: &AtomicBool,
) -> Result<Output, DataplaneError> {
    let feed = Some(Feed::Script(script.clone()));
    run_collecting(program, args, feed, timeout, cancel)
}

/// `run_into` with the output collected.
fn run_collecting(
    program: &Path,
    args: &[&str],
    stdin: Option<Feed>,
    timeout: Duration,
    cancel: &AtomicBool,
) -> Result<Output, DataplaneError> {
    let mut bytes = Vec::new();
    let (status, stderr) = run_into(program, args, stdin, timeout, cancel, &mut |chunk| {
        bytes.extend_from_slice(chunk)
    })?;
    Ok(Output {
        status,
        stdout: String::from_utf8_lossy(&bytes).into_owned(),
        stderr,
    })
}

/// `run_unless` without input, handing `line` each line of the output (without its line
/// break) as the child prints it, instead of collecting the output: a save of a large table
/// prints hundreds of megabytes that the caller keeps only a small part of. The `Output`'s
/// `stdout` is empty.
pub(crate) fn run_lines_unless(
    program: &Path,
    args: &[&str],
    timeout: Duration,
    cancel: &AtomicBool,
    line: &mut dyn FnMut(&str),
) -> Result<Output, DataplaneError> {
    let mut lines = Lines {
        partial: Vec::new(),
        line,
    };
    let (status, stderr) = run_into(program, args, None, timeout, cancel, &mut |chunk| {
        lines.feed(chunk)
    })?;
    lines.finish();
    Ok(Output {
        status,
        stdout: String::new(),
        stderr,
    })
}

/// Cuts a byte stream into lines for `run_lines_unless`.
struct Lines<'a> {
    /// The start of a line whose end has not come yet.
    partial: Vec<u8>,
    line: &'a mut dyn FnMut(&str),
}

impl Lines<'_> {
    fn feed(&mut self, chunk: &[u8]) {
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            let Some(body) = piece.strip_suffix(b"\n") else {
                self.partial.extend_from_slice(piece);
                continue;
            };
            if self.partial.is_empty() {
                (self.line)(&String::from_utf8_lossy(body));
            } else {
                self.partial.extend_from_slice(body);
                (self.line)(&String::from_utf8_lossy(&self.partial));
                self.partial.clear();
            }
        }
    }

    /// The last line, when the output did not end with a line break.
    fn finish(&mut self) {
        if !self.partial.is_empty() {
            (self.line)(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
    }
}

/// How much of a child's output is read at a time, and how many such chunks may wait for the
/// caller: a caller that handles the output more slowly than the child prints it holds the
/// child back instead of buffering all of it.
const CHUNK: usize = 64 * 1024;
const CHUNKS_WAITING: usize = 4;

/// The body of `run_unless`: the child's output goes to `stdout` a chunk at a time, on the
/// calling thread, as it comes; the exit status and the whole of stderr are returned.
fn run_into(
    program: &Path,
    args: &[&str],
    stdin: Option<Feed>,
    timeout: Duration,
    cancel: &AtomicBool,
    stdout: &mut dyn FnMut(&[u8]),
) -> Result<(ExitStatus, String), DataplaneError> {
    let display = display_name(program);
    if cancelled(cancel) {
        return Err(DataplaneError::Cancelled { program: display });
    }
    let mut child = Command::new(program)
        .args(args)
        // English messages: failures are classified by their text.
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| DataplaneError::Spawn {
            program: display.clone(),
            source,
        })?;

    // Feed stdin and read both outputs on their own threads so a large payload cannot
    // deadlock against a full pipe. The threads are not joined when the child is killed: a
    // grandchild it left may hold a pipe open for as long as it likes.
    let writer = stdin.map(|feed| {
        let pipe = child.stdin.take();
        thread::spawn(move || {
            let Some(mut pipe) = pipe else {
                return;
            };
            // A child that exits early closes its stdin; its exit status tells why.
            match feed {
                Feed::Text(text) => {
                    let _ = pipe.write_all(text.as_bytes());
                }
                Feed::Script(script) => {
                    script.write_out(&mut |text| pipe.write_all(text.as_bytes()).is_ok())
                }
            }
        })
    });
    // The readers finish when the child closes its output, i.e. (almost always) when it exits:
    // waiting for them wakes up at once instead of polling.
    let chunks = pump(child.stdout.take());
    let (done, stderr_closed) = mpsc::channel();
    let stderr = drain(child.stderr.take(), done);
    let deadline = Instant::now() + timeout;
    let mut waiter = Waiter {
        deadline,
        cancel,
        next_ping: Instant::now() + WAITING_PING,
    };
    let stdout_closed = loop {
        match waiter.recv(&chunks) {
            Received::Item(chunk) => stdout(&chunk),
            Received::Closed => break true,
            Received::GaveUp => break false,
        }
    };
    let outputs_closed = stdout_closed && matches!(waiter.recv(&stderr_closed), Received::Item(()));
    let status = if outputs_closed {
        wait_with_deadline(&mut child, &mut waiter)
    } else {
        None
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        if cancelled(cancel) {
            return Err(DataplaneError::Cancelled { program: display });
        }
        return Err(DataplaneError::Timeout {
            program: display,
            timeout,
        });
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Ok((status, stderr.join().unwrap_or_default()))
}

/// `flag` or `cancel_children` was set.
fn cancelled(flag: &AtomicBool) -> bool {
    flag.load(Ordering::SeqCst) || CANCELLED.load(Ordering::SeqCst)
}

/// Read `pipe` on a thread of its own, a chunk at a time, into the returned channel, which
/// closes at the end of the output.
fn pump<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (chunks, received) = mpsc::sync_channel(CHUNKS_WAITING);
    thread::spawn(move || {
        let Some(mut pipe) = pipe else {
            return;
        };
        loop {
            let mut chunk = vec![0; CHUNK];
            match pipe.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    // The caller gave up on the child: nothing more to read for.
                    if chunks.send(chunk).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    received
}

fn drain<R: Read + Send + 'static>(
    pipe: Option<R>,
    done: mpsc::Sender<()>,
) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = done.send(());
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// What one wait for a message gave.
enum Received<T> {
    Item(T),
    /// Every sender is gone.
    Closed,
    /// The deadline passed or the wait was cancelled.
    GaveUp,
}

/// The deadline, the cancel flag and the watchdog callback of one wait.
struct Waiter<'a> {
    deadline: Instant,
    cancel: &'a AtomicBool,
    next_ping: Instant,
}

impl Waiter<'_> {
    /// False once the deadline passed or the wait was cancelled; runs the waiting hook when due.
    fn go_on(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.next_ping {
            if let Some(hook) = WAITING_HOOK.get() {
                hook();
            }
            self.next_ping = now + WAITING_PING;
        }
        now < self.deadline && !cancelled(self.cancel)
    }

    /// The longest sleep before the next look at the flag.
    fn slice(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .min(CANCEL_POLL)
    }

    /// Wait for one message on `rx`.
    fn recv<T>(&mut self, rx: &mpsc::Receiver<T>) -> Received<T> {
        loop {
            match rx.recv_timeout(self.slice()) {
                Ok(item) => return Received::Item(item),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Received::Closed,
                Err(mpsc::RecvTimeoutError::Timeout) if !self.go_on() => return Received::GaveUp,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

/// Reap the child; its output is closed, so it is exiting: poll briefly (a child that closed
/// its output but keeps running is still bounded by the deadline and the cancel flag).
fn wait_with_deadline(child: &mut Child, waiter: &mut Waiter<'_>) -> Option<ExitStatus> {
    let mut pause = Duration::from_micros(50);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return child.wait().ok(),
        }
        if !waiter.go_on() {
            return None;
        }
        thread::sleep(pause.min(waiter.slice()));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

pub(crate) fn display_name(program: &Path) -> String {
    program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.display().to_string())
}

pub(crate) fn describe_status(status: &ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    }
}

/// What kind of trouble a failed child's stderr describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    Permission,
    Kernel,
    Busy,
    Other,
}

/// Sort a failure by the messages iptables, ip6tables and ipset print (run with `LC_ALL=C`).
pub(crate) fn classify(stderr: &str) -> FailureKind {
    let text = stderr.to_ascii_lowercase();
    if text.contains("permission denied") || text.contains("you must be root") {
        FailureKind::Permission
    } else if text.contains("holding the xtables lock")
        || text.contains("resource temporarily unavailable")
        || text.contains("device or resource busy")
    {
        FailureKind::Busy
    } else if text.contains("do you need to insmod")
        || text.contains("protocol not supported")
        || text.contains("address family not supported")
        || text.contains("cannot open session to kernel")
        || text.contains("is incompatible, use 'nft' tool")
    {
        FailureKind::Kernel
    } else {
        FailureKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_tools_messages() {
        assert_eq!(
            classify("iptables-save v1.8.9 (legacy): Cannot initialize: Permission denied (you must be root)"),
            FailureKind::Permission
        );
        assert_eq!(
            classify(
                "Another app is currently holding the xtables lock. Stopped waiting after 10s."
            ),
            FailureKind::Busy
        );
        assert_eq!(
            classify("iptables-restore: unable to initialize table 'raw'\nTable does not exist (do you need to insmod?)"),
            FailureKind::Kernel
        );
        assert_eq!(
            classify("ipset v7.17: Kernel error received: Protocol not supported"),
            FailureKind::Kernel
        );
        assert_eq!(
            classify("iptables-restore v1.8.9 (legacy): Couldn't load match `foo':No such file or directory\n\nError occurred at line: 2"),
            FailureKind::Other
        );
    }

    #[test]
    fn feeds_stdin_and_collects_output() {
        let cat = find_in_path("cat").expect("cat is in PATH");
        let out = run(&cat, &[], Some("line one\nline two\n"), CHILD_TIMEOUT).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, "line one\nline two\n");
    }

    #[test]
    fn a_large_payload_does_not_deadlock() {
        let cat = find_in_path("cat").expect("cat is in PATH");
        let payload = "-A cali-x -j ACCEPT\n".repeat(200_000);
        let out = run(&cat, &[], Some(&payload), CHILD_TIMEOUT).unwrap();
        assert_eq!(out.stdout.len(), payload.len());
    }

    /// A script of one chain of `rules` rules, written out in many chunks.
    fn big_script(rules: usize) -> RestoreScript {
        let (_, mut b) = crate::ruleset::restore::filled_chain(rules);
        b.commit();
        b.into_script()
    }

    #[test]
    fn a_script_is_fed_whole_and_in_order() {
        let cat = find_in_path("cat").expect("cat is in PATH");
        let script = big_script(50_000);
        let cancel = AtomicBool::new(false);
        let out = run_script_unless(&cat, &[], &script, CHILD_TIMEOUT, &cancel).unwrap();
        assert!(out.status.success());
        assert!(out.stdout.len() > 1_000_000, "{} bytes", out.stdout.len());
        assert!(out.stdout == script.text(), "the child read another text");
    }

    #[test]
    fn a_child_that_stops_reading_its_script_is_not_waited_on() {
        let head = find_in_path("head").expect("head is in PATH");
        let cancel = AtomicBool::new(false);
        let out = run_script_unless(
            &head,
            &["-c", "10"],
            &big_script(50_000),
            CHILD_TIMEOUT,
            &cancel,
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, "*filter\n:c");
    }

    #[test]
    fn output_read_by_lines_arrives_whole_and_in_order() {
        let seq = find_in_path("seq").expect("seq is in PATH");
        let mut lines = Vec::new();
        let cancel = AtomicBool::new(false);
        // ~1.3 MB of output: many chunks, lines cut at their edges.
        let out = run_lines_unless(&seq, &["200000"], CHILD_TIMEOUT, &cancel, &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        assert!(out.status.success());
        assert!(out.stdout.is_empty());
        let want: Vec<String> = (1..=200_000).map(|n| n.to_string()).collect();
        assert_eq!(lines, want);
    }

    /// Chunk edges anywhere (inside a line, inside a UTF-8 character, right after a line
    /// break) give the same lines; a last line without its line break still arrives.
    #[test]
    fn lines_are_the_same_whatever_the_chunk_edges() {
        let text = "-A cali-x -m comment --comment \"é\" -j ACCEPT\n\n:cali-y - [0:0]\nCOMMIT";
        let want = [
            "-A cali-x -m comment --comment \"é\" -j ACCEPT",
            "",
            ":cali-y - [0:0]",
            "COMMIT",
        ];
        for size in 1..text.len() {
            let mut got = Vec::new();
            let mut push = |l: &str| got.push(l.to_string());
            let mut lines = Lines {
                partial: Vec::new(),
                line: &mut push,
            };
            for chunk in text.as_bytes().chunks(size) {
                lines.feed(chunk);
            }
            lines.finish();
            assert_eq!(got, want, "chunks of {size} bytes");
        }
    }

    /// A child killed at its deadline while a grandchild still holds its output open: the wait
    /// ends at the deadline all the same.
    #[test]
    fn a_grandchild_holding_the_output_does_not_hold_the_wait() {
        let sh = find_in_path("sh").expect("sh is in PATH");
        let cancel = AtomicBool::new(false);
        let err = run_lines_unless(
            &sh,
            &["-c", "echo first; sleep 30 & exec sleep 30"],
            Duration::from_millis(300),
            &cancel,
            &mut |_| {},
        )
        .err()
        .expect("sleep 30 cannot finish in 300 ms");
        assert!(matches!(err, DataplaneError::Timeout { .. }), "{err}");
    }

    #[test]
    fn large_inputs_get_a_longer_deadline() {
        assert_eq!(timeout_for(0), CHILD_TIMEOUT);
        // A 25 MB restore payload (about 200,000 rules) gets 250 s more than the base.
        assert_eq!(
            timeout_for(25_000_000),
            CHILD_TIMEOUT + Duration::from_secs(250)
        );
    }

    #[test]
    fn a_hung_child_is_killed_at_the_deadline() {
        let sleep = find_in_path("sleep").expect("sleep is in PATH");
        let err = run(&sleep, &["30"], None, Duration::from_millis(100))
            .err()
            .expect("sleep 30 cannot finish in 100 ms");
        assert!(matches!(err, DataplaneError::Timeout { .. }), "{err}");
    }

    /// SIGTERM while a child hangs: the child is killed at once, not at its deadline, and no
    /// further child starts.
    #[test]
    fn a_cancelled_wait_kills_the_child() {
        let sleep = find_in_path("sleep").expect("sleep is in PATH");
        let cancel = std::sync::Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let canceller = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            flag.store(true, Ordering::SeqCst);
        });
        let err = run_unless(&sleep, &["600"], None, CHILD_TIMEOUT, &cancel)
            .err()
            .expect("sleep 600 was cancelled");
        canceller.join().unwrap();
        assert!(matches!(err, DataplaneError::Cancelled { .. }), "{err}");
        let err = run_unless(&sleep, &["0"], None, CHILD_TIMEOUT, &cancel)
            .err()
            .expect("nothing starts after a cancel");
        assert!(matches!(err, DataplaneError::Cancelled { .. }), "{err}");
    }

    #[test]
    fn the_base_deadline_is_below_the_units_watchdog() {
        let unit = include_str!("../../systemd/hostfw.service");
        let watchdog: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("WatchdogSec="))
            .and_then(|v| v.trim_end_matches('s').parse().ok())
            .expect("WatchdogSec=<n>s in the unit");
        assert!(CHILD_TIMEOUT < Duration::from_secs(watchdog));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run(
            Path::new("/nonexistent/hostfw-no-such-tool"),
            &[],
            None,
            CHILD_TIMEOUT,
        )
        .err()
        .expect("cannot spawn a missing file");
        assert!(matches!(err, DataplaneError::Spawn { .. }), "{err}");
    }
}
