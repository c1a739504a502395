//! Failover across a cluster's members, shared by every gRPC implementation. A request goes to
//! the member that last answered; when that member is unreachable, has no leader or is
//! stopping, the next one is tried, round after round with backoff until [`FAILOVER_BUDGET`]
//! runs out. That suits idempotent requests only: a request that failed on one member may still
//! have been applied there. A request that must not be applied twice goes through
//! [`Cluster::call_once`], which moves on only when the failure proves the request was never
//! proposed, and otherwise answers [`Error::MayHaveBeenApplied`].
//!
//! Knows nothing of any service's messages: callers pass a closure making the request.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::auth::layers::WithToken;

/// What every request goes over: a member's channel, with the account's token if one is set.
pub(crate) type Transport = WithToken<Channel>;
use tonic::{Code, Status, Streaming};

use crate::connect::{ConnectOptions, Tls};
use crate::error::{Error, Result};

/// How long connecting to one member may take: loopback and LAN members answer in
/// milliseconds, so a member silent for a second is treated as down and the next one tried.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one request (or opening a stream, up to its first response) may take on one
/// member before the next one is tried. A leader election takes about a second; five covers
/// a slow disk too.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to keep trying every member before answering [`Error::Unavailable`]: long enough
/// to ride out a leader election after a failover.
pub(crate) const FAILOVER_BUDGET: Duration = Duration::from_secs(10);
/// HTTP/2 pings on idle connections, so a watch or keep-alive stream to a member that died or
/// froze fails within about [`KEEPALIVE_INTERVAL`] + [`KEEPALIVE_TIMEOUT`] and moves on.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// More endpoints than this is a mistake (a cluster has 3, 5 or 7 members).
pub(crate) const ENDPOINTS_MAX: usize = 64;

pub(crate) struct Cluster {
    members: Vec<Member>,
    /// The member that last answered: tried first.
    current: AtomicUsize,
}

struct Member {
    url: String,
    /// Lazy: connects on first use and reconnects after a failure by itself.
    channel: Transport,
    /// etcd's own client for this member, for the Lease API (created on first use).
    etcd: OnceCell<etcd_client::Client>,
    /// For `https://` members.
    tls: Option<Tls>,
}

impl Cluster {
    /// Prepares a connection to each endpoint without contacting any (so a client can start
    /// before the cluster). Must run inside a tokio runtime.
    pub(crate) fn new(endpoints: &[String], options: &ConnectOptions) -> Result<Cluster> {
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument(
                "no endpoint given; pass at least one, e.g. http://127.0.0.1:2379".into(),
            ));
        }
        if endpoints.len() > ENDPOINTS_MAX {
            return Err(Error::InvalidArgument(format!(
                "{} endpoints given, at most {ENDPOINTS_MAX} are accepted",
                endpoints.len()
            )));
        }
        let members = endpoints.iter().map(|endpoint| Member::new(endpoint, options)).collect::<Result<_>>()?;
        Ok(Cluster { members, current: AtomicUsize::new(0) })
    }

    /// Sends `request` to the current member, failing over as described in the module docs.
    /// `what` names the operation in the error message ("register", "watch").
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, request: F) -> Result<T>
    where
        F: FnMut(Transport) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_tracked(what, request).await.map(|(_, value)| value)
    }

    /// [`Cluster::call`], also returning the index of the member that answered.
    pub(crate) async fn call_tracked<T, F, Fut>(&self, what: &str, request: F) -> Result<(usize, T)>
    where
        F: FnMut(Transport) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_with(what, Repeat::Idempotent, request).await
    }

    /// Opens a server stream on the first member that can serve it and reads its first message
    /// (every watch starts with one), failing over like `call_tracked`. Returns the member,
    /// the stream and that first message.
    pub(crate) async fn open_stream<T, F, Fut>(&self, what: &str, mut open: F) -> Result<(usize, Streaming<T>, T)>
    where
        F: FnMut(Transport) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Streaming<T>>, Status>>,
    {
        let (member, (stream, first)) = self
            .call_tracked(what, |channel| {
                let opened = open(channel);
                async move {
                    let mut stream = opened.await?.into_inner();
                    match stream.message().await? {
                        Some(first) => Ok((stream, first)),
                        None => Err(Status::unavailable("the watch ended before its first response")),
                    }
                }
            })
            .await?;
        Ok((member, stream, first))
    }

    /// Sends a request that must not be applied twice. It goes to the next member only when the
    /// failure proves it was never proposed (no connection could be made, or the member knew no
    /// leader); any other failure, a timeout included, is [`Error::MayHaveBeenApplied`].
    pub(crate) async fn call_once<T, F, Fut>(&self, what: &str, request: F) -> Result<T>
    where
        F: FnMut(Transport) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_with(what, Repeat::OnlyIfNeverProposed, request).await.map(|(_, value)| value)
    }

    async fn call_with<T, F, Fut>(&self, what: &str, repeat: Repeat, mut request: F) -> Result<(usize, T)>
    where
        F: FnMut(Transport) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + FAILOVER_BUDGET;
        let mut backoff = BACKOFF_MIN;
        loop {
            let first = self.current();
            let mut failures = Vec::with_capacity(self.members.len());
            for offset in 0..self.members.len() {
                let index = (first + offset) % self.members.len();
                let member = &self.members[index];
                let failure = match tokio::time::timeout(REQUEST_TIMEOUT, request(member.channel.clone())).await {
                    Ok(Ok(value)) => {
                        self.current.store(index, Ordering::Relaxed);
                        return Ok((index, value));
                    }
                    Ok(Err(status)) => match repeat.classify(&status) {
                        Outcome::NextMember => describe(&status),
                        Outcome::Definite => return Err(from_status(status)),
                        Outcome::Unknown => {
                            return Err(Error::MayHaveBeenApplied(format!(
                                "could not {what}: {}: {}",
                                member.url,
                                describe(&status)
                            )))
                        }
                    },
                    Err(_) if repeat == Repeat::OnlyIfNeverProposed => {
                        return Err(Error::MayHaveBeenApplied(format!(
                            "could not {what}: {}: no answer within {REQUEST_TIMEOUT:?}",
                            member.url
                        )))
                    }
                    Err(_) => format!("no answer within {REQUEST_TIMEOUT:?}"),
                };
                tracing::debug!(endpoint = %member.url, "{what} failed: {failure}; trying the next member");
                failures.push(format!("{}: {failure}", member.url));
            }
            if Instant::now() + backoff >= deadline {
                return Err(Error::Unavailable(format!(
                    "could not {what} on any member within {FAILOVER_BUDGET:?} ({}); check that the cluster is \
                     running, has a leader, and that the endpoints are right",
                    failures.join("; ")
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Sends a request that may wait as long as it must (a lock, a campaign) and is safe to
    /// send again (it names its own lease): no per-attempt timeout and no failover budget; a
    /// member failure moves on to the next member, with backoff, until an answer. The caller
    /// bounds the wait by dropping the future.
    pub(crate) async fn call_waiting<T, F, Fut>(&self, what: &str, mut request: F) -> Result<T>
    where
        F: FnMut(Transport) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut backoff = BACKOFF_MIN;
        loop {
            let index = self.current();
            let member = &self.members[index];
            match request(member.channel.clone()).await {
                Ok(value) => return Ok(value),
                Err(status) if is_member_failure(&status) => {
                    tracing::debug!(endpoint = %member.url, "{what} failed: {}; trying the next member", describe(&status));
                    self.fail_over_from(index);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(status) => return Err(from_status(status)),
            }
        }
    }

    /// How many members the cluster was given.
    pub(crate) fn members(&self) -> usize {
        self.members.len()
    }

    /// The member requests go to first.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.members.len()
    }

    /// Moves away from member `index` after one of its streams failed, unless another caller
    /// already did.
    pub(crate) fn fail_over_from(&self, index: usize) {
        let next = (index + 1) % self.members.len();
        // An error means `current` already changed: someone else found a better member.
        let _ = self.current.compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub(crate) fn url(&self, index: usize) -> &str {
        &self.members[index].url
    }

    /// etcd's client connected to member `index` only, for the Lease API.
    pub(crate) async fn etcd(&self, index: usize) -> Result<etcd_client::Client> {
        let member = &self.members[index];
        let client = member
            .etcd
            .get_or_try_init(|| async {
                let mut options = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
                    .with_keep_alive_while_idle(true);
                if let Some(tls) = &member.tls {
                    options = options.with_tls(tls.tonic());
                }
                etcd_client::Client::connect([member.url.as_str()], Some(options)).await
            })
            .await
            .map_err(|error| Error::Unavailable(format!("{}: {error}", member.url)))?;
        Ok(client.clone())
    }
}

impl Member {
    fn new(endpoint: &str, options: &ConnectOptions) -> Result<Member> {
        let url = if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
        let tls = match (url.starts_with("https://"), options.tls()) {
            (true, Some(tls)) => Some(tls.clone()),
            (true, None) => {
                return Err(Error::InvalidArgument(format!(
                    "endpoint {endpoint:?} is https:// but no TLS options were given: pass the CA that signed the \
                     members' certificates (ConnectOptions::with_tls, keelctl --cacert)"
                )))
            }
            (false, _) => None,
        };
        let mut channel = tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|error| {
                Error::InvalidArgument(format!(
                    "endpoint {endpoint:?} is not a valid URL ({error}); expected e.g. http://127.0.0.1:2379"
                ))
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        if let Some(tls) = &tls {
            channel = channel.tls_config(tls.tonic()).map_err(|error| {
                Error::InvalidArgument(format!("endpoint {endpoint:?}: the TLS options are not usable: {error}"))
            })?;
        }
        let channel = WithToken::new(channel.connect_lazy(), options.token());
        Ok(Member { url, channel, etcd: OnceCell::new(), tls })
    }
}

/// Which failures a request may be sent again after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Applying it twice is harmless: any member failure moves on.
    Idempotent,
    /// Applying it twice is not: move on only when it was certainly never proposed.
    OnlyIfNeverProposed,
}

/// What one failed attempt means.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Try the next member.
    NextMember,
    /// The cluster refused the request: the same error on any member.
    Definite,
    /// The request may have been applied.
    Unknown,
}

impl Repeat {
    fn classify(self, status: &Status) -> Outcome {
        match self {
            Repeat::Idempotent if is_member_failure(status) => Outcome::NextMember,
            Repeat::Idempotent => Outcome::Definite,
            Repeat::OnlyIfNeverProposed if was_never_proposed(status) => Outcome::NextMember,
            // A member fails this way after it may have proposed the request (a timeout, a
            // connection lost mid-request, a server stopping), or the state machine failed
            // while answering.
            Repeat::OnlyIfNeverProposed
                if is_member_failure(status) || matches!(status.code(), Code::Internal | Code::DataLoss) =>
            {
                Outcome::Unknown
            }
            // Refused while validating, before anything was proposed.
            Repeat::OnlyIfNeverProposed => Outcome::Definite,
        }
    }
}

/// The message a member answers when it knows no leader: it proposed nothing.
const NO_LEADER: &str = "etcdserver: no leader";

/// Whether `status` proves the request was never proposed: no connection to the member could
/// be made (so nothing was sent), or the member knew no leader to propose it to.
fn was_never_proposed(status: &Status) -> bool {
    if status.code() == Code::Unavailable && status.message() == NO_LEADER {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Whether `status` says "this member cannot serve now, another may": unreachable, no leader,
/// stopping, timed out, or the connection broke.
pub(crate) fn is_member_failure(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => true,
        // tonic reports some broken connections as Unknown.
        Code::Unknown => {
            let message = status.message().to_ascii_lowercase();
            ["transport", "connection", "connect", "broken pipe", "stream"].iter().any(|word| message.contains(word))
        }
        _ => false,
    }
}

/// The error a status that is not a member failure becomes.
pub(crate) fn from_status(status: Status) -> Error {
    match status.code() {
        Code::NotFound => Error::NotFound,
        Code::InvalidArgument => Error::InvalidArgument(status.message().to_string()),
        Code::Unauthenticated => Error::Unauthenticated(status.message().to_string()),
        Code::PermissionDenied => Error::Forbidden(status.message().to_string()),
        Code::Unimplemented => Error::Other {
            code: "Unimplemented".into(),
            message: format!(
                "{} (is this endpoint a Keel member? plain etcd does not serve Keel's registry API)",
                status.message()
            ),
        },
        code => Error::Other { code: format!("{code:?}"), message: status.message().to_string() },
    }
}

fn describe(status: &Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let cases = [
            (Status::unavailable("etcdserver: no leader"), true),
            (Status::unavailable("tcp connect error"), true),
            (Status::deadline_exceeded("timeout"), true),
            (Status::unknown("transport error"), true),
            (Status::unknown("something odd"), false),
            (Status::invalid_argument("the service name is empty"), false),
            (Status::not_found("service not found"), false),
        ];
        for (status, failure) in cases {
            assert_eq!(is_member_failure(&status), failure, "{status:?}");
        }
        assert_eq!(from_status(Status::not_found("x")), Error::NotFound);

        let once = |status: &Status| Repeat::OnlyIfNeverProposed.classify(status);
        assert_eq!(once(&Status::unavailable(NO_LEADER)), Outcome::NextMember);
        assert_eq!(once(&Status::unavailable("etcdserver: request timed out")), Outcome::Unknown);
        assert_eq!(once(&Status::unavailable("tcp connect error")), Outcome::Unknown, "no ConnectError source");
        assert_eq!(
            once(&Status::internal("keel: state machine answered with the wrong response type")),
            Outcome::Unknown
        );
        assert_eq!(once(&Status::invalid_argument("events: topic name is empty")), Outcome::Definite);
        assert_eq!(once(&Status::not_found("events: no such topic")), Outcome::Definite);
        assert_eq!(from_status(Status::invalid_argument("bad")), Error::InvalidArgument("bad".into()));
    }

    #[tokio::test]
    async fn bad_endpoints_are_rejected_before_connecting() {
        assert!(matches!(Cluster::new(&[], &ConnectOptions::default()), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            Cluster::new(&["https://127.0.0.1:1".into()], &ConnectOptions::default()),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            Cluster::new(&["http://[::1".into()], &ConnectOptions::default()),
            Err(Error::InvalidArgument(_))
        ));
        assert!(Cluster::new(&["127.0.0.1:2379".into()], &ConnectOptions::default()).is_ok());
    }

    #[tokio::test]
    async fn unreachable_members_give_unavailable_after_the_budget() {
        tokio::time::pause();
        // Port 1 on loopback: nothing listens there, so connecting fails at once.
        let cluster =
            Cluster::new(&["http://127.0.0.1:1".into(), "http://127.0.0.1:1".into()], &ConnectOptions::default())
                .expect("valid URLs");
        let result = cluster
            .call("ping", |channel| async move {
                let mut client = keel_proto::v1::registry_client::RegistryClient::new(channel);
                client.list_services(keel_proto::v1::ListServicesRequest {}).await
            })
            .await;
        match result {
            Err(Error::Unavailable(message)) => assert!(message.contains("127.0.0.1:1"), "{message}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unreachable_members_are_not_an_unknown_outcome() {
        tokio::time::pause();
        // Nothing listens on port 1: each attempt fails to connect, so nothing was ever sent and
        // trying every member for the whole budget is safe even for a non-idempotent request.
        let cluster = Cluster::new(&["http://127.0.0.1:1".into()], &ConnectOptions::default()).expect("a valid URL");
        let result = cluster
            .call_once("publish", |channel| async move {
                let mut client = keel_proto::v1::events_client::EventsClient::new(channel);
                client.topics(keel_proto::v1::TopicsRequest {}).await
            })
            .await;
        assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
    }
}
