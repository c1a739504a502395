//! Latency histograms and what is reported from them: ops/s and percentiles of one run, medians
//! over runs, ratios between systems. Pure: no clock, no I/O.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The slowest latency a histogram holds; slower operations are recorded as this. A minute is
/// far beyond any client timeout keel-bench sets.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Three significant digits: 0.1% resolution at every magnitude.
const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    // Cannot fail: the bounds are constants that satisfy 1 <= low, 2 * low <= high, digits <= 5.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS).expect("valid histogram bounds")
}

/// Records one latency, clamped into the histogram's range (a sub-microsecond latency is 1 µs).
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_US_MAX);
    histogram.saturating_record(micros);
}

/// Adds `other` into `into`; both come from `new_histogram`, so the ranges match.
pub fn merge(into: &mut Histogram<u64>, other: &Histogram<u64>) {
    // Cannot fail: every histogram here has the same bounds, so no value is out of range.
    into.add(other).expect("histograms with the same bounds");
}

/// One run's figures: what a row of the report holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub ops: u64,
    pub errors: u64,
    pub duration_s: f64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// CPU time (user + system) of every member during the window, per operation, when the
    /// members are processes keel-bench started (compare), in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_cpu_us_per_op: Option<f64>,
}

/// The figures of `histogram`, whose operations completed within `window`.
pub fn summarize(histogram: &Histogram<u64>, errors: u64, window: Duration) -> Summary {
    let ms = |quantile: f64| {
        if histogram.is_empty() {
            0.0
        } else {
            histogram.value_at_quantile(quantile) as f64 / 1_000.0
        }
    };
    let duration_s = window.as_secs_f64();
    Summary {
        ops: histogram.len(),
        errors,
        duration_s,
        ops_per_s: if duration_s > 0.0 { histogram.len() as f64 / duration_s } else { 0.0 },
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: if histogram.is_empty() { 0.0 } else { histogram.max() as f64 / 1_000.0 },
        member_cpu_us_per_op: None,
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[middle] } else { (sorted[middle - 1] + sorted[middle]) / 2.0 })
}

/// `candidate / baseline`, or `None` when the baseline is zero or either is missing.
pub fn ratio(candidate: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (candidate, baseline) {
        (Some(candidate), Some(baseline)) if baseline > 0.0 && candidate.is_finite() => Some(candidate / baseline),
        _ => None,
    }
}

/// Medians over the runs of one system at one workload and client count.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Medians {
    pub runs: usize,
    pub ops_per_s: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    #[serde(default)]
    pub member_cpu_us_per_op: Option<f64>,
}

impl Medians {
    pub fn of<'a>(summaries: impl IntoIterator<Item = &'a Summary>) -> Medians {
        let summaries: Vec<&Summary> = summaries.into_iter().collect();
        let median_of = |field: fn(&Summary) -> f64| median(&summaries.iter().map(|s| field(s)).collect::<Vec<_>>());
        Medians {
            runs: summaries.len(),
            ops_per_s: median_of(|s| s.ops_per_s),
            p50_ms: median_of(|s| s.p50_ms),
            p90_ms: median_of(|s| s.p90_ms),
            p99_ms: median_of(|s| s.p99_ms),
            p999_ms: median_of(|s| s.p999_ms),
            member_cpu_us_per_op: median(&summaries.iter().filter_map(|s| s.member_cpu_us_per_op).collect::<Vec<_>>()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn ratio_is_candidate_over_baseline() {
        assert_eq!(ratio(Some(300.0), Some(100.0)), Some(3.0));
        assert_eq!(ratio(Some(5.0), Some(10.0)), Some(0.5));
        assert_eq!(ratio(Some(5.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
    }

    #[test]
    fn summary_of_a_known_distribution() {
        let mut histogram = new_histogram();
        // 1..=1000 ms, one each: the p-th percentile is p * 10 ms, within 0.1%.
        for ms in 1..=1_000u64 {
            record(&mut histogram, Duration::from_millis(ms));
        }
        let summary = summarize(&histogram, 2, Duration::from_secs(4));
        assert_eq!(summary.ops, 1_000);
        assert_eq!(summary.errors, 2);
        assert!((summary.ops_per_s - 250.0).abs() < 1e-9);
        let close = |actual: f64, expected: f64| (actual - expected).abs() <= expected * 0.001 + 0.001;
        assert!(close(summary.p50_ms, 500.0), "{summary:?}");
        assert!(close(summary.p90_ms, 900.0), "{summary:?}");
        assert!(close(summary.p99_ms, 990.0), "{summary:?}");
        assert!(close(summary.p999_ms, 999.0), "{summary:?}");
        assert!(close(summary.max_ms, 1_000.0), "{summary:?}");
    }

    #[test]
    fn an_empty_run_summarises_to_zeros() {
        let summary = summarize(&new_histogram(), 5, Duration::from_secs(1));
        assert_eq!((summary.ops, summary.ops_per_s, summary.p99_ms, summary.max_ms), (0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn latencies_out_of_range_are_clamped_not_lost() {
        let mut histogram = new_histogram();
        record(&mut histogram, Duration::from_nanos(10));
        record(&mut histogram, Duration::from_secs(3_600));
        assert_eq!(histogram.len(), 2);
        assert_eq!(histogram.min(), 1);
        assert!(histogram.max() >= LATENCY_US_MAX);
    }

    #[test]
    fn merged_histograms_hold_both() {
        let (mut a, mut b) = (new_histogram(), new_histogram());
        record(&mut a, Duration::from_millis(1));
        record(&mut b, Duration::from_millis(2));
        merge(&mut a, &b);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn medians_over_runs_take_each_field_separately() {
        let run = |ops_per_s: f64, p99_ms: f64| Summary {
            ops: 0,
            errors: 0,
            duration_s: 1.0,
            ops_per_s,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms,
            p999_ms: 4.0,
            max_ms: 5.0,
            member_cpu_us_per_op: None,
        };
        let runs = [run(100.0, 9.0), run(300.0, 1.0), run(200.0, 5.0)];
        let medians = Medians::of(&runs);
        assert_eq!(medians.runs, 3);
        assert_eq!(medians.ops_per_s, Some(200.0));
        assert_eq!(medians.p99_ms, Some(5.0));
        assert_eq!(Medians::of(&[]).ops_per_s, None);
    }
}
