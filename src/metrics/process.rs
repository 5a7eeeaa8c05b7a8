//! The standard `process_*` families (the names, types and help texts client_golang's process
//! collector exports and Calico's dashboard reads), taken from /proc/self at scrape time.
//! Parsing is pure; `read` is the only part that touches /proc.

use super::exposition::{Family, Kind, Sample};
use std::fs;

/// What one look at /proc/self found.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub start_time_seconds: f64,
    pub open_fds: f64,
    pub max_fds: Option<f64>,
}

/// Read this process's figures; whatever cannot be read is left out.
pub fn read() -> Option<ProcessStats> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    let boot = fs::read_to_string("/proc/stat").ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    let mut stats = parse_stat(&stat, ticks, page, boot_time(&boot)?)?;
    stats.open_fds = fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    stats.max_fds = fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| max_open_files(&l));
    Some(stats)
}

/// `/proc/self/stat` fields after the command name (which may hold spaces and parentheses):
/// utime (14), stime (15), starttime (22), vsize (23), rss pages (24), numbered from 1.
fn parse_stat(text: &str, ticks: f64, page: f64, boot: f64) -> Option<ProcessStats> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse::<f64>().ok() };
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        start_time_seconds: boot + field(22)? / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        open_fds: 0.0,
        max_fds: None,
    })
}

/// `btime` in /proc/stat: boot time, seconds since the epoch.
fn boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of "Max open files" in /proc/self/limits.
fn max_open_files(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The families, in client_golang's names and help texts.
pub fn families(stats: &ProcessStats) -> Vec<Family> {
    let gauge = |name, help, value| Family {
        name,
        help,
        kind: Kind::Gauge,
        samples: vec![Sample::plain(value)],
    };
    let mut out = vec![
        Family {
            name: "process_cpu_seconds_total",
            help: "Total user and system CPU time spent in seconds.",
            kind: Kind::Counter,
            samples: vec![Sample::plain(stats.cpu_seconds)],
        },
        gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            stats.open_fds,
        ),
    ];
    if let Some(max) = stats.max_fds {
        out.push(gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            max,
        ));
    }
    out.extend([
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            stats.virtual_bytes,
        ),
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            stats.resident_bytes,
        ),
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            stats.start_time_seconds,
        ),
    ]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis must not shift the fields.
        let stat = "4242 (hostfw (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    150 50 0 0 20 0 3 0 1000 123456789 2048 18446744073709551615";
        let s = parse_stat(stat, 100.0, 4096.0, 1_700_000_000.0).expect("parses");
        assert_eq!(s.cpu_seconds, 2.0);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert_eq!(s.virtual_bytes, 123456789.0);
        assert_eq!(s.resident_bytes, 2048.0 * 4096.0);
    }

    #[test]
    fn boot_time_and_fd_limit_are_found() {
        assert_eq!(boot_time("cpu 1 2\nbtime 1700000000\n"), Some(1.7e9));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
    }

    #[test]
    fn this_process_can_be_read() {
        let s = read().expect("/proc/self is readable");
        assert!(s.resident_bytes > 0.0);
        assert!(s.open_fds >= 3.0);
        assert!(s.start_time_seconds > 1.0e9);
    }
}
