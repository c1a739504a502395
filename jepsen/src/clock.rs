//! The run's clock: nanoseconds since the run started, shared by the workload (operation
//! windows) and the nemesis (fault windows) so the two can be laid side by side.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    pub fn start() -> Self {
        RunClock { start: Instant::now() }
    }

    /// Nanoseconds since the run started; saturates after 584 years.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `offset` after the run started.
    pub fn at(&self, offset: Duration) -> Instant {
        self.start + offset
    }
}
