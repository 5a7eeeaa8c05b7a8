//! A Summary as Felix's (client_golang's) behaves: quantiles 0.5, 0.9 and 0.99 over the
//! observations of the last ten minutes (client_golang's `DefMaxAge`), plus a `_sum` and
//! `_count` over the process's lifetime. Pure: the caller passes the time.

use super::exposition::Sample;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The quantiles Felix's summaries report (libcalico-go/lib/prometheus/summary.go,
/// `DefObjectives`).
pub const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// How long an observation counts towards the quantiles (client_golang `DefMaxAge`).
const MAX_AGE: Duration = Duration::from_secs(600);

/// Observations kept for the quantiles at most: applies are rare (one per edit or repair), so
/// this only bounds memory under a storm; older ones drop out first.
const MAX_KEPT: usize = 1024;

#[derive(Debug, Clone, Default)]
pub struct Summary {
    window: VecDeque<(Instant, f64)>,
    sum: f64,
    count: u64,
}

impl Summary {
    pub fn observe(&mut self, now: Instant, value: f64) {
        self.sum += value;
        self.count += 1;
        if self.window.len() == MAX_KEPT {
            self.window.pop_front();
        }
        self.window.push_back((now, value));
    }

    /// The quantile lines, then `_sum` and `_count`. With nothing observed in the window the
    /// quantiles are NaN, as client_golang reports them.
    pub fn samples(&self, now: Instant) -> Vec<Sample> {
        let mut recent: Vec<f64> = self
            .window
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= MAX_AGE)
            .map(|(_, v)| *v)
            .collect();
        recent.sort_by(f64::total_cmp);
        let mut out: Vec<Sample> = QUANTILES
            .iter()
            .map(|q| Sample {
                suffix: "",
                labels: vec![("quantile", q.to_string())],
                value: rank(&recent, *q),
            })
            .collect();
        out.push(Sample {
            suffix: "_sum",
            labels: Vec::new(),
            value: self.sum,
        });
        out.push(Sample {
            suffix: "_count",
            labels: Vec::new(),
            value: self.count as f64,
        });
        out
    }
}

/// The value at quantile `q` of sorted values (nearest rank), NaN when there are none.
fn rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(samples: &[Sample], quantile: &str) -> f64 {
        samples
            .iter()
            .find(|s| s.labels.first().is_some_and(|(_, v)| v == quantile))
            .map(|s| s.value)
            .unwrap_or(f64::INFINITY)
    }

    #[test]
    fn empty_summary_reports_nan_quantiles_and_zero_sum_and_count() {
        let samples = Summary::default().samples(Instant::now());
        assert_eq!(samples.len(), 5);
        assert!(value(&samples, "0.5").is_nan());
        assert_eq!(samples[3].suffix, "_sum");
        assert_eq!(samples[3].value, 0.0);
        assert_eq!(samples[4].suffix, "_count");
        assert_eq!(samples[4].value, 0.0);
    }

    #[test]
    fn quantiles_cover_the_window_and_sum_count_the_lifetime() {
        let start = Instant::now();
        let mut s = Summary::default();
        s.observe(start, 100.0);
        let later = start + Duration::from_secs(700);
        for i in 1..=100 {
            s.observe(later, i as f64);
        }
        let samples = s.samples(later);
        assert_eq!(value(&samples, "0.5"), 50.0);
        assert_eq!(value(&samples, "0.9"), 90.0);
        assert_eq!(value(&samples, "0.99"), 99.0);
        assert_eq!(samples[3].value, 5150.0);
        assert_eq!(samples[4].value, 101.0);
    }
}
