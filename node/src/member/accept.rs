//! The member's accept loop, for both listeners (client and peer). It exists because tonic's
//! own loop retries a failed accept at once: out of file descriptors (EMFILE) with a
//! connection waiting, every accept fails immediately and the server spins at 100% CPU,
//! starving the connections it already serves.
//!
//! Here a process-wide shortage (EMFILE, ENFILE, ENOBUFS, ENOMEM) backs off, doubling from
//! `ACCEPT_BACKOFF_MIN` to `ACCEPT_BACKOFF_MAX` as Go's net/http does, while the connections
//! already accepted go on being served by their own tasks; an error that concerns only the
//! connection being accepted (ECONNABORTED and the network errors accept(2) passes on) is
//! skipped. The stream never yields an error and never ends.

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use futures::Stream;
use nix::errno::Errno;
use tokio::net::{TcpListener, TcpStream};

// ---- limits ----

/// The first pause after an accept failed for lack of resources: short, since a descriptor
/// is often freed a moment later (Go's net/http starts at 5 ms too).
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);

/// The longest pause: a member out of descriptors takes new connections again at most this
/// long after they are available, and meanwhile tries once a second.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

const _: () = assert!(ACCEPT_BACKOFF_MIN.as_nanos() < ACCEPT_BACKOFF_MAX.as_nanos());

/// Accepted connections with Nagle off (requests and Raft messages are small and
/// latency-bound), for `serve_with_incoming`.
pub(super) fn accepted(listener: TcpListener) -> impl Stream<Item = Result<TcpStream, Infallible>> {
    futures::stream::unfold(Acceptor { listener, backoff: None }, |mut acceptor| async move {
        let stream = acceptor.next().await;
        Some((Ok(stream), acceptor))
    })
}

struct Acceptor {
    listener: TcpListener,
    /// The pause after the last failure, while accepts keep failing.
    backoff: Option<Duration>,
}

impl Acceptor {
    /// The next connection, however long it takes.
    async fn next(&mut self) -> TcpStream {
        loop {
            let error = match self.listener.accept().await {
                Ok((stream, _)) => {
                    if self.backoff.take().is_some() {
                        tracing::info!("accepting connections again");
                    }
                    match stream.set_nodelay(true) {
                        Ok(()) => return stream,
                        // The connection is already gone (reset): nothing to serve.
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            match classify(&error) {
                Failure::ThisConnection => tracing::debug!("connection lost while accepting it: {error}"),
                Failure::Resources => self.back_off(&error).await,
            }
        }
    }

    async fn back_off(&mut self, error: &io::Error) {
        if self.backoff.is_none() {
            // Once per episode: the log must not flood while it lasts.
            tracing::warn!(
                "cannot accept connections ({error}); retrying in up to {:?} while serving the open ones",
                ACCEPT_BACKOFF_MAX
            );
        }
        let delay = next_backoff(self.backoff);
        self.backoff = Some(delay);
        tokio::time::sleep(delay).await;
    }
}

/// The pause after `last`: doubling from the minimum up to the maximum.
fn next_backoff(last: Option<Duration>) -> Duration {
    match last {
        None => ACCEPT_BACKOFF_MIN,
        Some(last) => last.saturating_mul(2).min(ACCEPT_BACKOFF_MAX),
    }
}

/// What an accept error concerns.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Only the connection being accepted: skip it, take the next.
    ThisConnection,
    /// The process or the machine (EMFILE, ENFILE, ENOBUFS, ENOMEM), or something unknown:
    /// accepting again at once would fail again, so pause.
    Resources,
}

fn classify(error: &io::Error) -> Failure {
    let Some(code) = error.raw_os_error() else {
        return match error.kind() {
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted => {
                Failure::ThisConnection
            }
            _ => Failure::Resources,
        };
    };
    match Errno::from_raw(code) {
        // accept(2): errors of the new socket passed on, to be treated like EAGAIN.
        Errno::ECONNABORTED
        | Errno::ECONNRESET
        | Errno::EINTR
        | Errno::EAGAIN
        | Errno::EPROTO
        | Errno::EPERM
        | Errno::ENETDOWN
        | Errno::ENOPROTOOPT
        | Errno::EHOSTDOWN
        | Errno::ENONET
        | Errno::EHOSTUNREACH
        | Errno::EOPNOTSUPP
        | Errno::ENETUNREACH
        | Errno::ETIMEDOUT => Failure::ThisConnection,
        _ => Failure::Resources,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortages_pause_and_lost_connections_are_skipped() {
        for errno in [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM, Errno::EBADF] {
            assert_eq!(classify(&io::Error::from_raw_os_error(errno as i32)), Failure::Resources, "{errno}");
        }
        for errno in [Errno::ECONNABORTED, Errno::EPROTO, Errno::ENETUNREACH, Errno::EINTR] {
            assert_eq!(classify(&io::Error::from_raw_os_error(errno as i32)), Failure::ThisConnection, "{errno}");
        }
    }

    #[test]
    fn the_pause_doubles_up_to_its_maximum() {
        let delays: Vec<Duration> =
            std::iter::successors(Some(next_backoff(None)), |last| Some(next_backoff(Some(*last)))).take(10).collect();
        assert_eq!(delays[0], ACCEPT_BACKOFF_MIN);
        assert_eq!(delays[1], ACCEPT_BACKOFF_MIN * 2);
        assert_eq!(delays[9], ACCEPT_BACKOFF_MAX);
    }
}
