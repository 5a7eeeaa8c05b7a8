//! `hostfw status`: print what the daemon reported in `status.json` (text or JSON) and whether
//! it is still running. Exit 0 when the daemon runs, 2 when there is no status file or the
//! process that wrote it is gone.

use super::{CmdResult, Exit};
use crate::cli::{OutputFormat, StatusArgs};
use crate::settings::Settings;
use crate::status::{self, PolicyOrigin, Status};
use std::fmt::Write;

pub fn run(settings: &Settings, args: &StatusArgs) -> CmdResult {
    let path = settings.status_path();
    let status = match status::read(&path) {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            eprintln!(
                "hostfw: no status at {}: the daemon is not running (start it with `systemctl start hostfw`)",
                path.display()
            );
            return Ok(Exit::Error);
        }
        Err(e) => return Err(e.into()),
    };
    let running = is_running(status.pid);
    match args.output {
        OutputFormat::Text => print!("{}", render_text(&status, running)),
        OutputFormat::Json => {
            let mut v = serde_json::to_value(&status)?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("running".into(), running.into());
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    if running {
        Ok(Exit::Ok)
    } else {
        eprintln!(
            "hostfw: the daemon that wrote {} (pid {}) is not running; this status is stale",
            path.display(),
            status.pid
        );
        Ok(Exit::Error)
    }
}

/// Whether `pid` is a live hostfw process (not a recycled pid of something else).
fn is_running(pid: u32) -> bool {
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

/// The human-readable report.
fn render_text(s: &Status, running: bool) -> String {
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
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "last error:    {e}");
    }
    let _ = writeln!(out, "updated:       {}", s.updated);
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
        let text = render_text(&s, false);
        let expected = "\
state:         degraded (daemon not running)
node:          host-a
backend:       nft
pid:           77 (started 1970-01-01T00:00:00.000Z)
policy:        generation 2, sha256 abc, from the last good set
last apply:    2026-01-01T00:00:00.000Z ok, 9 chain(s) written in 40 ms
drift repairs: 1 (last 2026-01-01T00:01:00.000Z)
updated:       1970-01-01T00:00:00.000Z
diagnostics:
  x.yaml: error: not YAML
";
        assert_eq!(text, expected);
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
}
