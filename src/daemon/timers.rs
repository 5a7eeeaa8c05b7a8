//! The daemon's timer arithmetic: debounce, post-write check schedule and retry backoff. Pure:
//! every function takes `now` from the caller, so tests drive it with any instants they like.

use std::time::{Duration, Instant};

/// Felix stops scheduling post-write checks once the interval reaches an hour.
pub(crate) const POST_WRITE_CAP: Duration = Duration::from_secs(3600);

/// Coalesces a burst of events: fires a quiet period after the last event (each event says how
/// long: a file still being written asks for longer than a finished one), but no later than
/// `max` after the first, so a writer that never pauses still gets its changes applied.
#[derive(Debug, Clone)]
pub(crate) struct Debounce {
    max: Duration,
    first: Option<Instant>,
    due: Option<Instant>,
    /// The last poke said a file is still being written: wait for it (until `due`) even past
    /// `max`, since reading now would read half a file.
    writing: bool,
}

impl Debounce {
    pub(crate) fn new(max: Duration) -> Debounce {
        Debounce {
            max,
            first: None,
            due: None,
            writing: false,
        }
    }

    /// Record an event at `now` after which `quiet` must pass without another.
    pub(crate) fn poke(&mut self, now: Instant, quiet: Duration) {
        self.first.get_or_insert(now);
        self.due = Some(now + quiet);
        self.writing = false;
    }

    /// Record that a file is still open for writing at `now`: due once it is closed (the next
    /// `poke`) or, for a writer that never closes it, after `wait`; not cut short by `max`.
    pub(crate) fn poke_writing(&mut self, now: Instant, wait: Duration) {
        self.poke(now, wait);
        self.writing = true;
    }

    /// When the burst is considered over; None when nothing is pending.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match (self.first, self.due) {
            (Some(_), Some(due)) if self.writing => Some(due),
            (Some(first), Some(due)) => Some(due.min(first + self.max)),
            _ => None,
        }
    }

    /// Forget the pending burst (it has been handled).
    pub(crate) fn clear(&mut self) {
        self.first = None;
        self.due = None;
        self.writing = false;
    }
}

/// Re-reads after a write at growing intervals (Felix's post-write check): at `base`, `2·base`,
/// `4·base`, ... after the write, while the interval is under an hour. A new write restarts it.
#[derive(Debug, Clone)]
pub(crate) struct PostWriteChecks {
    base: Duration,
    written_at: Option<Instant>,
    offset: Duration,
}

impl PostWriteChecks {
    pub(crate) fn new(base: Duration) -> PostWriteChecks {
        PostWriteChecks {
            base,
            written_at: None,
            offset: base,
        }
    }

    /// Change the first interval (a new FelixConfiguration); applies from the next write.
    pub(crate) fn set_base(&mut self, base: Duration) {
        self.base = base;
    }

    /// The kernel was written at `now`: restart the schedule.
    pub(crate) fn wrote(&mut self, now: Instant) {
        self.written_at = Some(now);
        self.offset = self.base;
    }

    /// The next check, if any is left.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let written_at = self.written_at?;
        if self.offset.is_zero() || self.offset >= POST_WRITE_CAP {
            return None;
        }
        Some(written_at + self.offset)
    }

    /// A check ran at `now`: move to the next interval after `now` (skipping any that a slow
    /// check overran, as Felix does).
    pub(crate) fn checked(&mut self, now: Instant) {
        let Some(written_at) = self.written_at else {
            return;
        };
        while !self.offset.is_zero()
            && self.offset < POST_WRITE_CAP
            && written_at + self.offset <= now
        {
            self.offset *= 2;
        }
    }
}

/// Bounded retries with exponential backoff.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    attempts: u32,
    failures: u32,
}

impl Backoff {
    /// `attempts` failures in a row are tolerated; the next delay doubles from `first` up to `max`.
    pub(crate) fn new(first: Duration, max: Duration, attempts: u32) -> Backoff {
        Backoff {
            first,
            max,
            attempts,
            failures: 0,
        }
    }

    /// Record a failure; the delay before the next try, or None when the retries are used up.
    pub(crate) fn failed(&mut self) -> Option<Duration> {
        self.failures += 1;
        if self.failures > self.attempts {
            return None;
        }
        let factor = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX);
        Some(self.first.saturating_mul(factor).min(self.max))
    }

    /// Record a success: the next failure starts again from `first`.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn debounce_waits_for_quiet_after_the_last_event() {
        let t0 = Instant::now();
        let mut d = Debounce::new(1000 * MS);
        assert_eq!(d.deadline(), None);
        d.poke(t0, 100 * MS);
        d.poke(t0 + 50 * MS, 100 * MS);
        d.poke(t0 + 90 * MS, 100 * MS);
        assert_eq!(d.deadline(), Some(t0 + 190 * MS));
        d.clear();
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn debounce_fires_at_max_under_a_continuous_burst() {
        let t0 = Instant::now();
        let mut d = Debounce::new(1000 * MS);
        for i in 0..30 {
            d.poke(t0 + i * 50 * MS, 100 * MS);
        }
        // Last event at 1450 ms would mean 1550 ms, but the first was at 0: capped at 1000 ms.
        assert_eq!(d.deadline(), Some(t0 + 1000 * MS));
    }

    #[test]
    fn debounce_quiet_follows_the_last_event() {
        let t0 = Instant::now();
        let mut d = Debounce::new(1000 * MS);
        // A file created (still being written), then closed: the short quiet of the close wins.
        d.poke(t0, 100 * MS);
        d.poke(t0 + 5 * MS, 25 * MS);
        assert_eq!(d.deadline(), Some(t0 + 30 * MS));
        // Another file created: back to the long quiet.
        d.poke(t0 + 10 * MS, 100 * MS);
        assert_eq!(d.deadline(), Some(t0 + 110 * MS));
    }

    #[test]
    fn post_write_checks_double_until_an_hour() {
        let t0 = Instant::now();
        let mut p = PostWriteChecks::new(Duration::from_secs(5));
        assert_eq!(p.deadline(), None);
        p.wrote(t0);
        let mut offsets = Vec::new();
        while let Some(at) = p.deadline() {
            offsets.push((at - t0).as_secs());
            p.checked(at);
        }
        // Felix: check when now >= lastWrite + interval, then interval *= 2, while < 1 h.
        assert_eq!(offsets, vec![5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560]);
    }

    #[test]
    fn post_write_check_overrun_skips_missed_intervals() {
        let t0 = Instant::now();
        let mut p = PostWriteChecks::new(Duration::from_secs(5));
        p.wrote(t0);
        p.checked(t0 + Duration::from_secs(25));
        assert_eq!(p.deadline(), Some(t0 + Duration::from_secs(40)));
    }

    #[test]
    fn new_write_restarts_post_write_schedule() {
        let t0 = Instant::now();
        let mut p = PostWriteChecks::new(Duration::from_secs(5));
        p.wrote(t0);
        p.checked(t0 + Duration::from_secs(5));
        p.wrote(t0 + Duration::from_secs(7));
        assert_eq!(p.deadline(), Some(t0 + Duration::from_secs(12)));
    }

    #[test]
    fn zero_post_write_interval_disables_checks() {
        let mut p = PostWriteChecks::new(Duration::ZERO);
        p.wrote(Instant::now());
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn backoff_doubles_caps_and_runs_out() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5), 4);
        let delays: Vec<_> = (0..5).map(|_| b.failed().map(|d| d.as_secs())).collect();
        assert_eq!(delays, vec![Some(1), Some(2), Some(4), Some(5), None]);
        b.succeeded();
        assert_eq!(b.failed(), Some(Duration::from_secs(1)));
    }
}
