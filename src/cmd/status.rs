//! `hostfw status`: print what the daemon reported in `status.json` (text or JSON), whether it
//! is still running, and (as root) live per-policy packet/byte counters read through the
//! dataplane. Exit 0 when the daemon runs with the policy directory in force (or is starting),
//! 1 when it runs degraded (the directory is invalid: the last good rules stay), 2 when there is
//! no status file, the process that wrote it is gone, or it reports persistent failure.

use super::{CmdResult, Exit};
use crate::cli::{OutputFormat, StatusArgs};
use crate::dataplane::{Backend, Dataplane, RealDataplane};
use crate::model::Direction;
use crate::render::names;
use crate::ruleset::save::{parse_save, LiveTable};
use crate::ruleset::{Family, TableName};
use crate::settings::Settings;
use crate::status::{self, PolicyOrigin, State, Status};
use serde::Serialize;
use std::fmt::Write;

pub fn run(settings: &Settings, args: &StatusArgs) -> CmdResult {
    let path = settings.status_path();
    // A pending `apply --confirm` (or a rollback holding the daemon) matters with or without a
    // daemon.
    let confirmation = crate::confirm::status_line(&settings.run_dir, crate::confirm::now_unix());
    let status = match status::read(&path) {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            if let Some(line) = &confirmation {
                println!("confirmation:  {line}");
            }
            eprintln!(
                "hostfw: no status at {}: the daemon is not running (start it with `systemctl start hostfw`)",
                path.display()
            );
            return Ok(Exit::Error);
        }
        Err(e) if e.is_permission_denied() => {
            // The file is root's and 0600 (docs/design.md, "File modes"): say so, rather than
            // a bare EACCES the admin has to decode.
            eprintln!(
                "hostfw: cannot read {}: permission denied; the daemon's status is readable by \
                 root only: run `sudo hostfw status`",
                path.display()
            );
            return Ok(Exit::Error);
        }
        Err(e) => return Err(e.into()),
    };
    let running = is_running(status.pid);
    let stale = if running {
        staleness(settings, &status)
    } else {
        None
    };
    let counters = if running {
        live_counters(&status)
    } else {
        Err("the daemon is not running".to_string())
    };
    match args.output {
        OutputFormat::Text => {
            print!("{}", format_text(&status, running));
            if let Some(line) = &stale {
                println!("stale:         {line}");
            }
            if let Some(line) = &confirmation {
                println!("confirmation:  {line}");
            }
            print!("{}", format_counters(&counters));
        }
        OutputFormat::Json => {
            let mut v = serde_json::to_value(&status)?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("running".into(), running.into());
                obj.insert("confirmation".into(), confirmation.into());
                obj.insert("stale".into(), stale.clone().into());
                let (list, why) = match &counters {
                    Ok(c) => (serde_json::to_value(c)?, serde_json::Value::Null),
                    Err(e) => (serde_json::Value::Null, e.as_str().into()),
                };
                obj.insert("counters".into(), list);
                obj.insert("counters_unavailable".into(), why);
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    if running {
        Ok(match status.state {
            State::Starting | State::Ok => Exit::Ok,
            State::Degraded => {
                eprintln!("hostfw: degraded: the policy directory is not in force (see above)");
                Exit::Invalid
            }
            State::Failed => Exit::Error,
        })
    } else {
        eprintln!(
            "hostfw: the daemon that wrote {} (pid {}) is not running; this status is stale",
            path.display(),
            status.pid
        );
        Ok(Exit::Error)
    }
}

/// How long after an edit the daemon may take to apply it and rewrite `status.json`.
const STATUS_LAG: std::time::Duration = std::time::Duration::from_secs(10);

/// `Some(why)` when `status.json` cannot describe what the daemon enforces: the valid policy
/// directory it says it applied is not the one on disk, and the file has not been rewritten
/// since (a full or read-only run directory makes the daemon's writes fail while it keeps
/// enforcing newer generations; its log says so too).
fn staleness(settings: &Settings, status: &Status) -> Option<String> {
    let policy = status.policy.as_ref()?;
    if policy.origin != PolicyOrigin::Directory || status.diagnostics.iter().any(|d| d.is_error()) {
        return None;
    }
    let age = std::fs::metadata(settings.status_path())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())?;
    let on_disk = crate::source::directory::read(std::slice::from_ref(&settings.policy_dir));
    if on_disk.unreadable || on_disk.revision == policy.source_hash || age < STATUS_LAG {
        return None;
    }
    Some(format!(
        "status.json was last written {} s ago for policy revision {} but the directory now \
         holds {}: the daemon has not reported since (cannot it write to {}? see its log)",
        age.as_secs(),
        short(&policy.source_hash),
        short(&on_disk.revision),
        settings.run_dir.display()
    ))
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Whether `pid` is a live hostfw process (not a recycled pid of something else).
pub(super) fn is_running(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        // EPERM: it exists but belongs to someone else (we are not root).
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.trim_end().starts_with("hostfw"),
        // /proc hidden (hidepid): trust the signal check.
        Err(_) => true,
    }
}

/// Packets and bytes, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, packets: u64, bytes: u64) {
        self.packets = self.packets.saturating_add(packets);
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// Live counters of one policy in one direction, over every table and family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyCounters {
    pub policy: String,
    /// `inbound` (cali-pi-) or `outbound` (cali-po-): `Direction::label`.
    pub direction: &'static str,
    /// Traffic that reached the policy: the counters of the rules jumping to its chain.
    pub evaluated: Count,
    /// Traffic a rule of the policy acted on: its chain's rules, except the RETURNs that only
    /// end the chain after a rule set the accept or pass mark.
    pub matched: Count,
}

/// The chain a rule jumps or goes to (`-j X` / `-g X`, the last one in the rule).
fn target(rule_text: &str) -> Option<&str> {
    let mut words = rule_text.split_whitespace();
    let mut found = None;
    while let Some(w) = words.next() {
        if w == "-j" || w == "-g" {
            found = words.next();
        }
    }
    found
}

/// Map saved tables (with `-c` counters) back to the policies in force: each policy's chains
/// are named by render's own naming function. Policies with no chain in the kernel are left
/// out.
pub fn policy_counters(policies: &[String], tables: &[LiveTable]) -> Vec<PolicyCounters> {
    let mut out = Vec::new();
    for policy in policies {
        for direction in Direction::ALL {
            let chain = names::policy_chain_for(direction, policy);
            let mut evaluated = Count::default();
            let mut matched = Count::default();
            let mut present = false;
            for table in tables {
                for live in table.chains.values() {
                    for rule in &live.rules {
                        if target(&rule.text) == Some(chain.as_str()) {
                            evaluated.add(rule.packets, rule.bytes);
                        }
                    }
                }
                if let Some(live) = table.chains.get(&chain) {
                    present = true;
                    for rule in &live.rules {
                        if target(&rule.text) != Some("RETURN") {
                            matched.add(rule.packets, rule.bytes);
                        }
                    }
                }
            }
            if present {
                out.push(PolicyCounters {
                    policy: policy.clone(),
                    direction: direction.label(),
                    evaluated,
                    matched,
                });
            }
        }
    }
    out
}

/// Read the kernel's counters through the dataplane (root only) and map them to policies.
fn live_counters(status: &Status) -> Result<Vec<PolicyCounters>, String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("reading counters needs root".into());
    }
    let Some(backend) = status.backend.as_deref().and_then(Backend::from_name) else {
        return Err("the daemon has not chosen an iptables backend yet".into());
    };
    let dp = RealDataplane::new(backend).map_err(|e| e.to_string())?;
    let mut tables = Vec::new();
    for family in Family::ALL {
        if !dp.supports(family) {
            continue;
        }
        for table in TableName::ALL {
            let text = dp.save_counters(family, table).map_err(|e| e.to_string())?;
            tables.push(parse_save(&text).map_err(|e| e.to_string())?);
        }
    }
    Ok(policy_counters(&status.policies, &tables))
}

/// The counters section of the text report.
fn format_counters(counters: &Result<Vec<PolicyCounters>, String>) -> String {
    let mut out = String::new();
    match counters {
        Err(why) => {
            let _ = writeln!(out, "counters:      unavailable ({why})");
        }
        Ok(list) if list.is_empty() => {
            let _ = writeln!(out, "counters:      no policy chains in the kernel");
        }
        Ok(list) => {
            let _ = writeln!(out, "counters (packets/bytes):");
            let width = list.iter().map(|c| c.policy.len()).max().unwrap_or(0);
            for c in list {
                let _ = writeln!(
                    out,
                    "  {:width$}  {:8}  evaluated {}/{}  matched {}/{}",
                    c.policy,
                    c.direction,
                    c.evaluated.packets,
                    c.evaluated.bytes,
                    c.matched.packets,
                    c.matched.bytes
                );
            }
        }
    }
    out
}

/// The human-readable report.
fn format_text(s: &Status, running: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "state:         {}{}",
        s.state.as_str(),
        if running { "" } else { " (daemon not running)" }
    );
    let _ = writeln!(out, "node:          {}", s.node);
    let _ = writeln!(
        out,
        "backend:       {}",
        s.backend.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "pid:           {} (started {})", s.pid, s.started);
    match &s.policy {
        Some(p) => {
            let origin = match p.origin {
                PolicyOrigin::Datastore => "datastore",
                PolicyOrigin::Directory => "policy directory",
                PolicyOrigin::LastGood => "last good set",
            };
            let _ = writeln!(
                out,
                "policy:        generation {}, sha256 {}, from the {origin}",
                p.generation, p.source_hash
            );
        }
        None => {
            let _ = writeln!(out, "policy:        none applied");
        }
    }
    match &s.last_apply {
        Some(a) => {
            let _ = writeln!(
                out,
                "last apply:    {} {}, {} chain(s) written in {} ms",
                a.time,
                if a.ok { "ok" } else { "FAILED" },
                a.chains_written,
                a.duration_ms
            );
        }
        None => {
            let _ = writeln!(out, "last apply:    -");
        }
    }
    let _ = writeln!(
        out,
        "drift repairs: {}{}",
        s.drift_repairs,
        s.last_repair
            .as_ref()
            .map(|t| format!(" (last {t})"))
            .unwrap_or_default()
    );
    if let Some(d) = &s.datastore {
        let _ = writeln!(
            out,
            "datastore:     {} {}, {}, revision {}, last event {}{}",
            d.kind,
            d.state,
            d.endpoints.join(","),
            d.revision,
            d.last_event.as_deref().unwrap_or("-"),
            d.error
                .as_ref()
                .map(|e| format!(" (error: {e})"))
                .unwrap_or_default()
        );
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "last error:    {e}");
    }
    let _ = writeln!(out, "updated:       {}", s.updated);
    if !s.overtaken.is_empty() {
        let _ = writeln!(out, "overtaken:");
        for o in &s.overtaken {
            let _ = writeln!(out, "  warning: {}", crate::diag::escape(o));
        }
    }
    if !s.diagnostics.is_empty() {
        let _ = writeln!(out, "diagnostics:");
        for d in &s.diagnostics {
            let _ = writeln!(out, "  {d}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Diagnostic;
    use crate::status::{ApplyRecord, PolicyInfo, State};
    use std::time::SystemTime;

    #[test]
    fn text_report_has_every_section() {
        let mut s = Status::starting("host-a", 77, SystemTime::UNIX_EPOCH);
        s.state = State::Degraded;
        s.backend = Some("nft".into());
        s.policy = Some(PolicyInfo {
            generation: 2,
            source_hash: "abc".into(),
            origin: PolicyOrigin::LastGood,
        });
        s.last_apply = Some(ApplyRecord {
            time: "2026-01-01T00:00:00.000Z".into(),
            duration_ms: 40,
            chains_written: 9,
            ok: true,
        });
        s.drift_repairs = 1;
        s.last_repair = Some("2026-01-01T00:01:00.000Z".into());
        s.diagnostics = vec![Diagnostic::file_error("x.yaml", "not YAML")];
        s.overtaken = vec!["IPv4 filter INPUT: hook above f2b-sshd".into()];
        let text = format_text(&s, false);
        let expected = "\
state:         degraded (daemon not running)
node:          host-a
backend:       nft
pid:           77 (started 1970-01-01T00:00:00.000Z)
policy:        generation 2, sha256 abc, from the last good set
last apply:    2026-01-01T00:00:00.000Z ok, 9 chain(s) written in 40 ms
drift repairs: 1 (last 2026-01-01T00:01:00.000Z)
updated:       1970-01-01T00:00:00.000Z
overtaken:
  warning: IPv4 filter INPUT: hook above f2b-sshd
diagnostics:
  x.yaml: error: not YAML
";
        assert_eq!(text, expected);
    }

    fn saved(text: &str) -> LiveTable {
        crate::ruleset::save::parse_save(text).unwrap()
    }

    #[test]
    fn counters_map_chains_back_to_policies() {
        // Chain names as render spells them: `cali-pi-gnp/<name>` (Felix v3.32+ policy IDs).
        let filter = saved(
            "*filter\n\
             :cali-fh-eth0 - [0:0]\n\
             :cali-pi-gnp/allow-ssh - [0:0]\n\
             :cali-po-gnp/allow-ssh - [0:0]\n\
             [10:600] -A cali-fh-eth0 -m comment --comment \"cali:a\" -m mark --mark 0x0/0x20000 -j cali-pi-gnp/allow-ssh\n\
             [7:420] -A cali-pi-gnp/allow-ssh -p tcp -m comment --comment \"cali:b\" -m multiport --dports 22 -j MARK --set-xmark 0x10000/0x10000\n\
             [7:420] -A cali-pi-gnp/allow-ssh -m comment --comment \"cali:c\" -m mark --mark 0x10000/0x10000 -j RETURN\n\
             [1:60] -A cali-pi-gnp/allow-ssh -p icmp -m comment --comment \"cali:d\" -j DROP\n\
             COMMIT\n",
        );
        // The `*` endpoint's copy in mangle adds to the same policy.
        let mangle = saved(
            "*mangle\n\
             :cali-pi-gnp/allow-ssh - [0:0]\n\
             [2:100] -A cali-fh-any -j cali-pi-gnp/allow-ssh\n\
             [2:100] -A cali-pi-gnp/allow-ssh -j MARK --set-xmark 0x10000/0x10000\n\
             COMMIT\n",
        );
        let got = policy_counters(
            &["allow-ssh".to_string(), "absent".to_string()],
            &[filter, mangle],
        );
        assert_eq!(
            got,
            vec![
                PolicyCounters {
                    policy: "allow-ssh".into(),
                    direction: "inbound",
                    // 10 jumps from filter + 2 from mangle.
                    evaluated: Count {
                        packets: 12,
                        bytes: 700
                    },
                    // MARK 7 + DROP 1 + mangle MARK 2; the RETURN is not counted.
                    matched: Count {
                        packets: 10,
                        bytes: 580
                    },
                },
                PolicyCounters {
                    policy: "allow-ssh".into(),
                    direction: "outbound",
                    evaluated: Count::default(),
                    matched: Count::default(),
                },
            ]
        );
    }

    #[test]
    fn counters_text_aligns_policy_names() {
        let list = vec![
            PolicyCounters {
                policy: "a".into(),
                direction: "inbound",
                evaluated: Count {
                    packets: 3,
                    bytes: 180,
                },
                matched: Count {
                    packets: 1,
                    bytes: 60,
                },
            },
            PolicyCounters {
                policy: "allow-ssh".into(),
                direction: "outbound",
                evaluated: Count::default(),
                matched: Count::default(),
            },
        ];
        assert_eq!(
            format_counters(&Ok(list)),
            "counters (packets/bytes):\n\
             \x20 a          inbound   evaluated 3/180  matched 1/60\n\
             \x20 allow-ssh  outbound  evaluated 0/0  matched 0/0\n"
        );
        assert_eq!(
            format_counters(&Err("reading counters needs root".into())),
            "counters:      unavailable (reading counters needs root)\n"
        );
    }

    #[test]
    fn target_is_the_last_jump() {
        assert_eq!(target("-m mark --mark 0x1/0x1 -j RETURN"), Some("RETURN"));
        assert_eq!(target("-g cali-pi-x"), Some("cali-pi-x"));
        assert_eq!(target("-p tcp"), None);
    }

    #[test]
    fn own_process_counts_as_running_only_under_the_hostfw_name() {
        // The test binary's comm is not "hostfw...": a live pid of another program is stale.
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(
            is_running(std::process::id()),
            comm.trim_end().starts_with("hostfw")
        );
        assert!(!is_running(0));
        assert!(!is_running(u32::MAX));
    }

    /// The daemon could not rewrite `status.json` (a full run directory) while the directory
    /// moved on: `status` says the file is stale instead of reporting the old generation.
    #[test]
    fn a_status_older_than_the_directory_is_called_stale() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            policy_dir: dir.path().join("policies"),
            node: "n".into(),
            backend: None,
            run_dir: dir.path().join("run"),
            state_dir: dir.path().join("state"),
            lockout_guard: crate::guard::DaemonMode::Sessions,
            datastore: crate::settings::DatastoreSettings::default(),
        };
        std::fs::create_dir_all(&settings.policy_dir).unwrap();
        std::fs::write(settings.policy_dir.join("a.yaml"), "kind: x\n").unwrap();
        let applied = crate::source::directory::read(std::slice::from_ref(&settings.policy_dir));
        let mut s = Status::starting("n", std::process::id(), SystemTime::now());
        s.policy = Some(PolicyInfo {
            generation: 1,
            source_hash: applied.revision.clone(),
            origin: PolicyOrigin::Directory,
        });
        crate::fsutil::private_dir(&settings.run_dir).unwrap();
        crate::status::write(&settings.status_path(), &s).unwrap();
        let old = nix::sys::time::TimeSpec::new(1_000_000, 0);
        let age_it = || {
            nix::sys::stat::utimensat(
                None,
                &settings.status_path(),
                &old,
                &old,
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            )
            .unwrap()
        };
        age_it();
        assert_eq!(staleness(&settings, &s), None, "same revision: not stale");
        std::fs::write(settings.policy_dir.join("b.yaml"), "kind: y\n").unwrap();
        let why = staleness(&settings, &s).expect("stale");
        assert!(why.contains("status.json was last written"), "{why}");
        // Freshly written: the daemon may still be applying the edit.
        crate::status::write(&settings.status_path(), &s).unwrap();
        assert_eq!(staleness(&settings, &s), None);
    }
}
