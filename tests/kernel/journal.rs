//! Native journal logging: `hostfw run` whose stderr is "the journal" (JOURNAL_STREAM names
//! stderr's device and inode, as systemd sets it) sends its records to the journal socket with
//! priorities and hostfw's fields, so `journalctl -p err` finds the errors. The journal here is
//! a stand-in: a private mount namespace puts a tmpfs on /run and a small receiver on
//! /run/systemd/journal/socket; a private network namespace keeps the daemon off the host's
//! firewall. Nothing outside the two namespaces is touched.

use crate::daemon_netns::BROKEN;
use crate::netns::{kernel_tests_enabled, must, Workdir};
use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

/// One journal record: its fields.
type Record = BTreeMap<String, String>;

/// The journal's native protocol: `KEY=value\n`, or `KEY\n`, a little-endian u64 length, the
/// value's bytes and `\n` (for values that may hold newlines).
fn parse_record(mut data: &[u8]) -> Record {
    let mut fields = Record::new();
    while let Some(end) = data.iter().position(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(&data[..end]).into_owned();
        data = &data[end + 1..];
        if let Some((key, value)) = line.split_once('=') {
            fields.insert(key.to_string(), value.to_string());
        } else if data.len() >= 8 {
            let (len, rest) = data.split_at(8);
            let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
            let value = rest.get(..len).unwrap_or(rest);
            fields.insert(line, String::from_utf8_lossy(value).into_owned());
            data = rest.get(len + 1..).unwrap_or(&[]);
        }
    }
    fields
}

/// The receiver's file: length-prefixed datagrams.
fn parse_records(mut data: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let (len, rest) = data.split_at(4);
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        out.push(parse_record(rest.get(..len).unwrap_or(rest)));
        data = rest.get(len..).unwrap_or(&[]);
    }
    out
}

/// Inside `unshare -m -n`: the stand-in journal (each datagram written with a 4-byte length
/// in front), then the daemon for a few seconds with stderr
/// on a file and JOURNAL_STREAM pointing at it. Arguments: hostfw, work dir, received file.
const SCRIPT: &str = r#"
set -e
hostfw="$1"; work="$2"; received="$3"
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal
python3 -c '
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/run/systemd/journal/socket")
open(sys.argv[1] + ".ready", "w").close()
with open(sys.argv[1], "ab") as out:
    while True:
        d = s.recv(1 << 20)
        out.write(struct.pack("<I", len(d)) + d)
        out.flush()
' "$received" &
receiver=$!
while [ ! -e "$received.ready" ]; do sleep 0.05; done
exec 2>"$work/stderr"
export JOURNAL_STREAM="$(stat -c %d:%i "$work/stderr")"
unset RUST_LOG
"$hostfw" --policy-dir "$work/policies" --node h --backend legacy \
    --run-dir "$work/run" --state-dir "$work/state" run &
daemon=$!
sleep 3
kill "$daemon" "$receiver"
wait "$daemon" || true
"#;

#[test]
fn stderr_on_the_journal_logs_natively_with_priorities_and_fields() {
    if !kernel_tests_enabled() {
        return;
    }
    let work = Workdir::new();
    work.write_policies(BROKEN);
    let received = work.dir.path().join("received");
    must(
        Command::new("unshare")
            .args(["-m", "-n", "sh", "-c", SCRIPT, "sh"])
            .arg(env!("CARGO_BIN_EXE_hostfw"))
            .arg(work.dir.path())
            .arg(&received),
    );
    let records = parse_records(&fs::read(&received).unwrap_or_default());
    let stderr = fs::read_to_string(work.dir.path().join("stderr")).unwrap_or_default();
    assert!(
        stderr.trim().is_empty(),
        "logged to stderr, not the journal:\n{stderr}"
    );
    let field = |r: &Record, k: &str| r.get(k).cloned().unwrap_or_default();
    let errors: Vec<&Record> = records
        .iter()
        .filter(|r| field(r, "PRIORITY") == "3")
        .collect();
    assert!(
        errors
            .iter()
            .any(|r| field(r, "MESSAGE").contains("policy set is invalid")),
        "{records:#?}"
    );
    let diagnostic = errors
        .iter()
        .find(|r| field(r, "HOSTFW_RESOURCE") == "GlobalNetworkPolicy/broken")
        .unwrap_or_else(|| panic!("no diagnostic with its resource field:\n{records:#?}"));
    assert!(
        field(diagnostic, "HOSTFW_FILE").ends_with("policies/policies.yaml"),
        "{diagnostic:#?}"
    );
    assert_eq!(field(diagnostic, "SYSLOG_IDENTIFIER"), "hostfw");
    // Informational lines are notices (5), not errors.
    assert!(
        records
            .iter()
            .any(|r| field(r, "PRIORITY") == "5" && field(r, "MESSAGE").contains("starting")),
        "{records:#?}"
    );
}
