//! What several keelctl commands share: stopping on a signal, and parsing `KEY=VALUE` flags.

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT (Ctrl-C) and SIGTERM, caught from installation on.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    pub fn install() -> anyhow::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// A `--metadata KEY=VALUE` flag.
pub fn parse_key_value(argument: &str) -> Result<(String, String), String> {
    match argument.split_once('=') {
        Some(("", _)) => Err(format!("{argument:?} has an empty key; expected KEY=VALUE")),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err(format!("{argument:?} has no '='; expected KEY=VALUE")),
    }
}
