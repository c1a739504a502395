//! [`GrpcRegistry`]: the registry of a Keel cluster, over its `keel.v1.Registry` gRPC API, with
//! failover between members (see [`crate::cluster`]). Watches resume on another member from
//! the revision after the last one seen; registrations keep their lease alive with etcd's
//! Lease.LeaseKeepAlive stream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keel_proto::v1 as pb;
use keel_proto::v1::registry_client::RegistryClient;
use tonic::Streaming;

use super::registration::{self, Keeper, Registration};
use super::{
    ttl_seconds, validate_deregister, validate_lookup, validate_register, Action, RegisterOptions, Registry, Service,
    WatchOptions, WatchResult, Watcher,
};
use crate::cluster::{self, Cluster};
use crate::connect::ConnectOptions;
use crate::error::{Error, Result};
use crate::lease::{keep_alive, LeaseLost};

/// A [`Registry`] backed by a Keel cluster. Cheap to clone: clones share connections.
#[derive(Clone)]
pub struct GrpcRegistry {
    cluster: Arc<Cluster>,
}

impl GrpcRegistry {
    /// Prepares connections to the cluster's members, e.g. `["http://127.0.0.1:2379"]` (a URL
    /// without a scheme gets `http://`). Nothing is contacted yet: the first request connects,
    /// so a service may start before the cluster. Fails only on a malformed endpoint list.
    pub async fn connect(endpoints: &[String]) -> Result<GrpcRegistry> {
        Self::connect_with(endpoints, &ConnectOptions::default()).await
    }

    /// As [`Self::connect`], with TLS for `https://` endpoints.
    pub async fn connect_with(endpoints: &[String], options: &ConnectOptions) -> Result<GrpcRegistry> {
        Ok(GrpcRegistry { cluster: Arc::new(Cluster::new(endpoints, options)?) })
    }

    /// Registers `service` and returns the lease it is attached to (0 without a TTL), for
    /// callers that keep the lease alive themselves.
    pub async fn register_with_lease(&self, service: &Service, options: RegisterOptions) -> Result<i64> {
        validate_register(service)?;
        let request = pb::RegisterRequest { service: Some(service.into()), ttl_seconds: ttl_seconds(options.ttl) };
        let response = self
            .cluster
            .call("register", |channel| {
                let request = request.clone();
                async move { RegistryClient::new(channel).register(request).await }
            })
            .await?;
        Ok(response.into_inner().lease_id)
    }

    /// Opens a watch stream from `start_revision` (0: now) on the first member that can serve
    /// it, and reads its first response (the revision the watch starts after).
    async fn open_watch(
        &self,
        service: &str,
        start_revision: i64,
    ) -> Result<(usize, Streaming<pb::WatchResponse>, i64)> {
        let request = pb::WatchRequest { service: service.to_string(), start_revision };
        let (member, stream, first) = self
            .cluster
            .open_stream("watch", |channel| {
                let request = request.clone();
                async move { RegistryClient::new(channel).watch(request).await }
            })
            .await?;
        if !first.results.is_empty() {
            return Err(Error::InvalidResponse("the first watch response carries results".into()));
        }
        Ok((member, stream, first.revision))
    }
}

#[async_trait]
impl Registry for GrpcRegistry {
    async fn register(&self, service: &Service, options: RegisterOptions) -> Result<()> {
        self.register_with_lease(service, options).await.map(|_| ())
    }

    async fn deregister(&self, service: &Service) -> Result<()> {
        validate_deregister(service)?;
        let request = pb::DeregisterRequest { service: Some(service.into()) };
        self.cluster
            .call("deregister", |channel| {
                let request = request.clone();
                async move { RegistryClient::new(channel).deregister(request).await }
            })
            .await?;
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<Service>> {
        validate_lookup(name)?;
        let request = pb::GetServiceRequest { name: name.to_string() };
        let response = self
            .cluster
            .call("get the service", |channel| {
                let request = request.clone();
                async move { RegistryClient::new(channel).get_service(request).await }
            })
            .await?;
        Ok(response.into_inner().services.into_iter().map(Service::from).collect())
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        let response = self
            .cluster
            .call("list services", |channel| async move {
                RegistryClient::new(channel).list_services(pb::ListServicesRequest {}).await
            })
            .await?;
        Ok(response.into_inner().services.into_iter().map(Service::from).collect())
    }

    async fn watch(&self, options: WatchOptions) -> Result<Box<dyn Watcher>> {
        if let Some(name) = &options.service {
            // Also keeps Some("") from meaning "every service" on the wire.
            validate_lookup(name)?;
        }
        let service = options.service.unwrap_or_default();
        let (member, stream, revision) = self.open_watch(&service, 0).await?;
        Ok(Box::new(GrpcWatcher {
            registry: self.clone(),
            service,
            stream: Some((member, stream)),
            pending: VecDeque::new(),
            next_revision: revision + 1,
            stopped: false,
        }))
    }

    async fn keep_registered(&self, service: &Service, options: RegisterOptions) -> Result<Registration> {
        registration::start(GrpcKeeper { registry: self.clone(), service: service.clone(), ttl: options.ttl }).await
    }
}

struct GrpcWatcher {
    registry: GrpcRegistry,
    /// Empty: every service.
    service: String,
    /// The open stream and the member serving it; None after it broke (reopened by `next`).
    stream: Option<(usize, Streaming<pb::WatchResponse>)>,
    /// Results received but not yet returned: one response may carry several.
    pending: VecDeque<WatchResult>,
    /// The first revision not yet seen: where to resume, and below which results are
    /// duplicates of ones already returned.
    next_revision: i64,
    stopped: bool,
}

impl GrpcWatcher {
    /// Queues the results of one response, skipping revisions already seen. A result this
    /// client cannot read is skipped and reported once the rest are queued, so the watcher
    /// stays consistent and can go on.
    fn accept(&mut self, response: pb::WatchResponse) -> Result<()> {
        let mut newest = response.revision;
        let mut unreadable = None;
        for result in response.results {
            newest = newest.max(result.revision);
            if result.revision < self.next_revision {
                continue;
            }
            match (result.action.parse::<Action>(), result.service) {
                (Ok(action), Some(service)) => self.pending.push_back(WatchResult { action, service: service.into() }),
                (Err(error), _) => unreadable = Some(error),
                (Ok(action), None) => {
                    unreadable = Some(Error::InvalidResponse(format!("a {action} result without a service")))
                }
            }
        }
        self.next_revision = self.next_revision.max(newest + 1);
        unreadable.map_or(Ok(()), Err)
    }
}

#[async_trait]
impl Watcher for GrpcWatcher {
    async fn next(&mut self) -> Result<WatchResult> {
        loop {
            if self.stopped {
                return Err(Error::WatchStopped);
            }
            if let Some(result) = self.pending.pop_front() {
                return Ok(result);
            }
            let Some((member, stream)) = &mut self.stream else {
                // Resume right after the last revision seen: no gap, no duplicate.
                let (member, stream, _) = self.registry.open_watch(&self.service, self.next_revision).await?;
                self.stream = Some((member, stream));
                continue;
            };
            let member = *member;
            let reason = match stream.message().await {
                Ok(Some(response)) => {
                    self.accept(response)?;
                    continue;
                }
                Ok(None) => "the member ended the stream".to_string(),
                Err(status) if cluster::is_member_failure(&status) => status.to_string(),
                Err(status) => {
                    // The stream is over; the next call tries to resume (and reports again).
                    self.stream = None;
                    return Err(cluster::from_status(status));
                }
            };
            tracing::warn!(
                endpoint = self.registry.cluster.url(member),
                next_revision = self.next_revision,
                "watch broke ({reason}); resuming on another member"
            );
            self.registry.cluster.fail_over_from(member);
            self.stream = None;
        }
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.stream = None;
        self.pending.clear();
    }
}

/// Keeps a registration's lease alive with etcd's LeaseKeepAlive stream, on the member
/// requests currently go to.
struct GrpcKeeper {
    registry: GrpcRegistry,
    service: Service,
    ttl: Duration,
}

#[async_trait]
impl Keeper for GrpcKeeper {
    async fn register(&mut self) -> Result<i64> {
        self.registry.register_with_lease(&self.service, RegisterOptions::with_ttl(self.ttl)).await
    }

    async fn hold(&mut self, lease_id: i64) -> String {
        if lease_id == 0 {
            return std::future::pending().await;
        }
        let cluster = &self.registry.cluster;
        let member = cluster.current();
        let reason = keep_alive(cluster, member, lease_id, self.ttl).await;
        if !matches!(reason, LeaseLost::Expired(_)) {
            // The stream to this member broke: move on, in case the member is the problem.
            cluster.fail_over_from(member);
        }
        format!("{} ({})", reason.message(), cluster.url(member))
    }

    async fn deregister(&mut self) -> Result<()> {
        self.registry.deregister(&self.service).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(action: &str, node_id: &str, revision: i64) -> pb::Result {
        let service = Service::with_node("s", "1", super::super::Node::new(node_id, "127.0.0.1:1"));
        pb::Result { action: action.into(), service: Some(service.into()), timestamp: 0, revision }
    }

    fn ids(watcher: &mut GrpcWatcher) -> Vec<String> {
        watcher.pending.drain(..).map(|result| format!("{}:{}", result.action, result.service.nodes[0].id)).collect()
    }

    #[tokio::test]
    async fn a_resumed_watch_skips_what_was_already_seen() {
        let registry = GrpcRegistry::connect(&["http://127.0.0.1:1".into()]).await.expect("valid endpoint");
        let mut watcher = GrpcWatcher {
            registry,
            service: String::new(),
            stream: None,
            pending: VecDeque::new(),
            next_revision: 5,
            stopped: false,
        };
        // Before the failover: revisions 5 and 6 (two nodes registered in one revision).
        let response = pb::WatchResponse {
            results: vec![result("create", "a", 5), result("create", "b", 6), result("create", "c", 6)],
            revision: 6,
        };
        watcher.accept(response).expect("readable");
        assert_eq!(ids(&mut watcher), ["create:a", "create:b", "create:c"]);
        assert_eq!(watcher.next_revision, 7);

        // A member that resends revision 6 (it must not, but a duplicate must not get through).
        let response =
            pb::WatchResponse { results: vec![result("create", "c", 6), result("delete", "a", 7)], revision: 7 };
        watcher.accept(response).expect("readable");
        assert_eq!(ids(&mut watcher), ["delete:a"]);

        // An unknown action is reported, the rest still delivered and the revision still moves.
        let response =
            pb::WatchResponse { results: vec![result("put", "x", 8), result("update", "b", 9)], revision: 9 };
        assert!(matches!(watcher.accept(response), Err(Error::InvalidResponse(_))));
        assert_eq!(ids(&mut watcher), ["update:b"]);
        assert_eq!(watcher.next_revision, 10);
    }
}
