//! The progress line on stderr while something long runs. On a terminal it is one line
//! rewritten in place every second; otherwise (a log file, CI) a plain line every few seconds.
//! It only reads counters that the work updates: it never slows the work down.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// How often the line is rewritten on a terminal.
const TICK: Duration = Duration::from_secs(1);
/// How often a line is printed when stderr is not a terminal.
const TICKS_PER_PLAIN_LINE: u32 = 5;

pub struct Progress {
    task: JoinHandle<()>,
    on_terminal: bool,
}

impl Progress {
    /// Starts printing `render(time since start)` until `finish`.
    pub fn start(render: impl Fn(Duration) -> String + Send + 'static) -> Progress {
        let on_terminal = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut ticks = 0u32;
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
            loop {
                interval.tick().await;
                ticks += 1;
                let line = render(started.elapsed());
                if on_terminal {
                    // \x1b[K clears what a longer previous line left behind.
                    eprint!("\r{line}\x1b[K");
                    let _ = std::io::stderr().flush();
                } else if ticks.is_multiple_of(TICKS_PER_PLAIN_LINE) {
                    eprintln!("{line}");
                }
            }
        });
        Progress { task, on_terminal }
    }

    /// Stops the line and clears it, so that results print on a clean line.
    pub fn finish(self) {
        self.task.abort();
        if self.on_terminal {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}
