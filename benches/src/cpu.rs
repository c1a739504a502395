//! CPU time the members of a cluster spend, sampled from `/proc` while a run goes on, so that a
//! run's CPU per operation covers exactly its measurement window.
//!
//! keel-bench shares the machine's cores with the members: as a system gets cheaper per
//! operation, the load generator takes a growing share of the cores, and ops/s understates the
//! difference. CPU per operation of the members alone does not.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the members' CPU counters are read: a tenth of a second is fine-grained against
/// a 10 s window and costs nothing measurable (one small file per member).
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Clock ticks per second of `/proc/<pid>/stat`'s utime and stime (`getconf CLK_TCK`; 100 on
/// every Linux architecture keel-bench runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// A sampler of the summed CPU ticks of some processes, running until finished.
pub struct CpuSampler {
    pids: Vec<u32>,
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CpuSampler {
    /// Starts sampling the processes `pids` (none: nothing is sampled).
    pub fn start(pids: Vec<u32>) -> CpuSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        let sampled = pids.clone();
        let task = tokio::spawn(async move {
            if sampled.is_empty() {
                return;
            }
            let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
            loop {
                ticker.tick().await;
                let Some(ticks) = total_ticks(&sampled) else {
                    return; // A member exited: the run fails on its own, and no figure is better than a wrong one.
                };
                // std Mutex: held for one push, never across an await.
                sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((Instant::now(), ticks));
            }
        });
        CpuSampler { pids, samples, task }
    }

    /// Stops sampling; the CPU seconds spent between `start` and `end`, from the samples
    /// nearest to each (`None` if there are none around the window).
    pub fn seconds_between(self, start: Instant, end: Instant) -> Option<f64> {
        self.task.abort();
        let mut samples = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // One last sample: the run usually returns within a sampling interval of its window's end.
        if !self.pids.is_empty() {
            if let Some(ticks) = total_ticks(&self.pids) {
                samples.push((Instant::now(), ticks));
            }
        }
        cpu_seconds_between(&samples, start, end)
    }
}

/// The summed CPU ticks of `pids`; `None` if one of them is gone.
fn total_ticks(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|&pid| cpu_ticks(pid)).sum()
}

/// The ticks spent between the last sample at or before `start` and the first at or after
/// `end`, scaled to the window's length.
pub fn cpu_seconds_between(samples: &[(Instant, u64)], start: Instant, end: Instant) -> Option<f64> {
    let &(from_at, from_ticks) = samples.iter().rev().find(|(at, _)| *at <= start)?;
    let &(to_at, to_ticks) = samples.iter().find(|(at, _)| *at >= end)?;
    let sampled = to_at.duration_since(from_at).as_secs_f64();
    let window = end.duration_since(start).as_secs_f64();
    if sampled <= 0.0 {
        return None;
    }
    Some(to_ticks.saturating_sub(from_ticks) as f64 / TICKS_PER_SECOND * window / sampled)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_between_scales_the_nearest_samples_to_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 2 ticks (20 ms of CPU) per 100 ms sample.
        let samples: Vec<(Instant, u64)> = (0..=20).map(|i| (at(i * 100), i * 2)).collect();
        let seconds = cpu_seconds_between(&samples, at(500), at(1500)).expect("a figure");
        assert!((seconds - 0.2).abs() < 1e-9, "{seconds}");
        assert_eq!(cpu_seconds_between(&samples, at(500), at(2500)), None, "no sample after the window");
    }

    #[test]
    fn this_process_spends_cpu() {
        let pid = std::process::id();
        let before = cpu_ticks(pid).expect("own stat");
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(60) {
            std::hint::black_box(0u64);
        }
        assert!(cpu_ticks(pid).expect("own stat") > before);
    }
}
