//! Logging for every command: natively to the systemd journal when stderr is the journal
//! (priorities and structured fields, so `journalctl -p err -u hostfw` and
//! `journalctl HOSTFW_GENERATION=3` work), otherwise env_logger's plain lines as before.
//! Owns the log level: `--log-level`/`RUST_LOG` if given, else FelixConfiguration's
//! `logSeverityScreen`, which can change while the daemon runs.
//!
//! Structured fields travel as `log` key-values; the journal gets them upper-cased
//! (`hostfw_generation` -> `HOSTFW_GENERATION`), the plain format leaves them out.

use crate::diag::Diagnostic;
use crate::model::LogSeverity;
use log::LevelFilter;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when the operator chose the level on the command line or in RUST_LOG; then
/// `logSeverityScreen` does not override it.
static EXPLICIT: AtomicBool = AtomicBool::new(false);

/// Felix's default `logSeverityScreen`, until a policy set says otherwise.
const DEFAULT_LEVEL: LevelFilter = LevelFilter::Info;

/// A journal logger behind an env_logger-style filter (`hostfw=debug,notify=warn`).
struct FilteredJournal {
    filter: env_filter::Filter,
    journal: systemd_journal_logger::JournalLog,
}

impl log::Log for FilteredJournal {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if self.filter.matches(record) {
            self.journal.log(record);
        }
    }

    fn flush(&self) {}
}

/// Start logging. `explicit`: the `--log-level` value, if any.
pub fn init(explicit: Option<&str>) {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let chosen = explicit.map(str::to_string).or(from_env);
    EXPLICIT.store(chosen.is_some(), Ordering::Relaxed);
    // Without an explicit choice the filter lets everything through and the global maximum
    // (`log::set_max_level`) is the level, so `logSeverityScreen` can move it at run time.
    let filters = chosen.clone().unwrap_or_else(|| "trace".into());
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(journal) = systemd_journal_logger::JournalLog::new() {
            let filter = env_filter::Builder::new().parse(&filters).build();
            let max = if chosen.is_some() {
                filter.filter()
            } else {
                DEFAULT_LEVEL
            };
            let journal = journal.with_syslog_identifier("hostfw".into());
            if log::set_boxed_logger(Box::new(FilteredJournal { filter, journal })).is_ok() {
                log::set_max_level(max);
                return;
            }
        }
    }
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&filters).format_timestamp(None);
    if builder.try_init().is_ok() && chosen.is_none() {
        log::set_max_level(DEFAULT_LEVEL);
    }
}

/// `logSeverityScreen` as a level; Fatal logs errors only (hostfw has no fatal level).
pub fn level_of(severity: LogSeverity) -> LevelFilter {
    match severity {
        LogSeverity::Trace => LevelFilter::Trace,
        LogSeverity::Debug => LevelFilter::Debug,
        LogSeverity::Info => LevelFilter::Info,
        LogSeverity::Warning => LevelFilter::Warn,
        LogSeverity::Error | LogSeverity::Fatal => LevelFilter::Error,
    }
}

/// Apply `logSeverityScreen`, unless the operator chose a level on the command line.
pub fn apply_severity_screen(level: LevelFilter) {
    if EXPLICIT.load(Ordering::Relaxed) {
        return;
    }
    let before = log::max_level();
    if before == level {
        return;
    }
    // Said at the more verbose of the two levels, so the change itself is always seen.
    let say = || {
        log::log!(
            before.max(level).to_level().unwrap_or(log::Level::Error),
            "log level is now {level} (logSeverityScreen)"
        )
    };
    if level > before {
        log::set_max_level(level);
        say();
    } else {
        say();
        log::set_max_level(level);
    }
}

/// Log a policy diagnostic at its severity, with the file and resource as journal fields.
pub fn diagnostic(d: &Diagnostic) {
    let resource = match (&d.kind, &d.name) {
        (Some(k), Some(n)) => format!("{k}/{n}"),
        (Some(k), None) => k.clone(),
        _ => String::new(),
    };
    let level = if d.is_error() {
        log::Level::Error
    } else {
        log::Level::Warn
    };
    log::log!(
        level,
        hostfw_file = d.file.as_str(),
        hostfw_resource = resource.as_str();
        "{d}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn felix_severities_map_to_levels() {
        assert_eq!(level_of(LogSeverity::Info), LevelFilter::Info);
        assert_eq!(level_of(LogSeverity::Warning), LevelFilter::Warn);
        assert_eq!(level_of(LogSeverity::Fatal), LevelFilter::Error);
        assert_eq!(level_of(LogSeverity::Trace), LevelFilter::Trace);
    }
}
