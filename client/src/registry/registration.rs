//! The handle that keeps a service registered, and the loop behind it shared by every
//! implementation: hold the lease; when it is lost, register again (with backoff) until it
//! works; on shutdown or drop, deregister.
//!
//! go-micro's etcd registry kept a lease id it never re-checked, so a lease lost during a
//! partition left the service silently unregistered (micro/go-micro#2956). Here the only way
//! out of "holding" is "registering again".

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// First wait before registering again after a failure; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two registration attempts: short enough that a service is back soon
/// after the cluster is, long enough not to hammer an unavailable one.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A lease held for less than this before being lost counts as a failure for the backoff, so
/// a member that accepts registrations but drops keep-alives cannot make the loop spin.
const HOLD_MIN: Duration = Duration::from_secs(1);

/// Keeps a service registered until [`Registration::shutdown`] or drop. Created by
/// [`super::Registry::keep_registered`].
///
/// Dropping it deregisters in a background task, best effort (it does not run if the runtime
/// is shutting down; the lease then expires after its TTL). Call `shutdown().await` to know the
/// service is gone.
#[derive(Debug)]
pub struct Registration {
    status: watch::Receiver<RegistrationStatus>,
    /// Dropping this (or sending on it) stops the keeper task, which then deregisters.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<()>>>,
}

/// Where a [`Registration`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationStatus {
    /// Whether the service is registered with a live lease, as far as the keeper knows.
    pub registered: bool,
    /// The lease the registration is attached to (0 without a TTL).
    pub lease_id: i64,
    /// How many times the registration was lost and made again.
    pub re_registrations: u64,
}

impl Registration {
    /// The current status.
    pub fn status(&self) -> RegistrationStatus {
        *self.status.borrow()
    }

    /// Whether the service is registered now, as far as the keeper knows.
    pub fn is_registered(&self) -> bool {
        self.status().registered
    }

    /// How many times the registration was lost and made again.
    pub fn re_registrations(&self) -> u64 {
        self.status().re_registrations
    }

    /// Waits until the status satisfies `condition` (checked now and on every change), e.g.
    /// `registration.wait_for(|s| s.re_registrations > 0)`. Returns that status, or
    /// [`Error::WatchStopped`] if the keeper ended first.
    pub async fn wait_for(&mut self, condition: impl FnMut(&RegistrationStatus) -> bool) -> Result<RegistrationStatus> {
        match self.status.wait_for(condition).await {
            Ok(status) => Ok(*status),
            Err(_) => Err(Error::WatchStopped),
        }
    }

    /// Stops keeping the service alive and deregisters it; returns the deregistration's result.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            // An error means the keeper already ended; its result is awaited below.
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else { return Ok(()) };
        match task.await {
            Ok(result) => result,
            Err(error) => Err(Error::Unavailable(format!("the registration keeper task failed: {error}"))),
        }
    }

    /// Waits until the process is asked to stop (SIGTERM, SIGINT as Ctrl-C sends, or SIGQUIT:
    /// the signals go-micro's services stop on), then deregisters as [`Registration::shutdown`]
    /// does. A server stops serving after this returns, so that callers stop choosing the node
    /// before it goes.
    pub async fn shutdown_on_signal(self) -> Result<()> {
        stop_signal().await.map_err(|error| Error::Unavailable(format!("cannot wait for a stop signal: {error}")))?;
        self.shutdown().await
    }
}

/// Resolves when the process receives a stop signal.
#[cfg(unix)]
async fn stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
        _ = quit.recv() => {}
    }
    Ok(())
}

/// Resolves when the process receives a stop signal (Ctrl-C).
#[cfg(not(unix))]
async fn stop_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Dropping `stop` wakes the keeper, which deregisters and exits on its own.
        self.stop.take();
    }
}

/// How one implementation registers, holds a lease and deregisters.
#[async_trait]
pub(crate) trait Keeper: Send + 'static {
    /// Registers the service (again) and returns its lease id (0 without a TTL).
    async fn register(&mut self) -> Result<i64>;
    /// Keeps `lease_id` alive; returns only when the registration is lost, saying why.
    async fn hold(&mut self, lease_id: i64) -> String;
    /// Removes the service.
    async fn deregister(&mut self) -> Result<()>;
}

/// Registers once (so the caller sees a bad request or an unavailable cluster at once), then
/// keeps the registration in a background task.
pub(crate) async fn start(mut keeper: impl Keeper) -> Result<Registration> {
    let lease_id = keeper.register().await?;
    let (status_sender, status) =
        watch::channel(RegistrationStatus { registered: true, lease_id, re_registrations: 0 });
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(keep(keeper, lease_id, status_sender, stopped));
    Ok(Registration { status, stop: Some(stop), task: Some(task) })
}

async fn keep(
    mut keeper: impl Keeper,
    mut lease_id: i64,
    status: watch::Sender<RegistrationStatus>,
    mut stopped: oneshot::Receiver<()>,
) -> Result<()> {
    let mut backoff = BACKOFF_MIN;
    'keeping: loop {
        let held_since = Instant::now();
        let reason = tokio::select! {
            _ = &mut stopped => break 'keeping,
            reason = keeper.hold(lease_id) => reason,
        };
        tracing::warn!(lease_id, "registration lost ({reason}); registering again");
        status.send_modify(|status| status.registered = false);
        if held_since.elapsed() >= HOLD_MIN {
            backoff = BACKOFF_MIN;
        } else if wait_or_stop(&mut stopped, &mut backoff).await {
            break 'keeping;
        }
        loop {
            let result = tokio::select! {
                _ = &mut stopped => break 'keeping,
                result = keeper.register() => result,
            };
            match result {
                Ok(new_lease_id) => {
                    lease_id = new_lease_id;
                    status.send_modify(|status| {
                        *status = RegistrationStatus {
                            registered: true,
                            lease_id,
                            re_registrations: status.re_registrations + 1,
                        }
                    });
                    tracing::info!(lease_id, "registered again");
                    break;
                }
                Err(error) => {
                    tracing::warn!("registering again failed: {error}; retrying in {backoff:?}");
                    if wait_or_stop(&mut stopped, &mut backoff).await {
                        break 'keeping;
                    }
                }
            }
        }
    }
    status.send_modify(|status| status.registered = false);
    keeper.deregister().await
}

/// Sleeps for `backoff` (then doubles it, up to the maximum); true when stopped meanwhile.
async fn wait_or_stop(stopped: &mut oneshot::Receiver<()>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    tokio::select! {
        _ = stopped => true,
        () = tokio::time::sleep(wait) => false,
    }
}
