//! [`GrpcConfig`]: the configuration of a Keel cluster, over its `keel.v1.Config` gRPC API, with
//! failover between members (see [`crate::cluster`]). The cluster checks every request: this
//! side only converts. A watch whose member fails is opened again on another one; the value it
//! starts with is passed on only if it differs from the last one returned, so no change is
//! reported twice (changes in between are seen as one, the latest).

use std::sync::Arc;

use async_trait::async_trait;
use keel_proto::v1 as pb;
use keel_proto::v1::config_client::ConfigClient;
use tonic::Streaming;

use super::{Config, ConfigWatcher, DeleteOptions, GetOptions, SetOptions, Value, WatchOptions};
use crate::cluster::{self, Cluster};
use crate::connect::ConnectOptions;
use crate::error::{Error, Result};

/// A [`Config`] backed by a Keel cluster. Cheap to clone: clones share connections.
#[derive(Clone)]
pub struct GrpcConfig {
    cluster: Arc<Cluster>,
}

impl GrpcConfig {
    /// Prepares connections to the cluster's members, e.g. `["http://127.0.0.1:2379"]` (a URL
    /// without a scheme gets `http://`). Nothing is contacted yet: the first request connects.
    /// Fails only on a malformed endpoint list.
    pub async fn connect(endpoints: &[String]) -> Result<GrpcConfig> {
        Self::connect_with(endpoints, &ConnectOptions::default()).await
    }

    /// As [`Self::connect`], with TLS for `https://` endpoints.
    pub async fn connect_with(endpoints: &[String], options: &ConnectOptions) -> Result<GrpcConfig> {
        Ok(GrpcConfig { cluster: Arc::new(Cluster::new(endpoints, options)?) })
    }

    /// Opens a watch on the first member that can serve it and reads its first response (the
    /// value now).
    async fn open_watch(
        &self,
        request: &pb::WatchConfigRequest,
    ) -> Result<(usize, Streaming<pb::WatchConfigResponse>, Value)> {
        let (member, stream, first) = self
            .cluster
            .open_stream("watch the configuration", |channel| {
                let request = request.clone();
                async move { ConfigClient::new(channel).watch(request).await }
            })
            .await?;
        Ok((member, stream, value(&first.value, first.revision)?))
    }
}

#[async_trait]
impl Config for GrpcConfig {
    async fn get_with(&self, path: &str, options: GetOptions) -> Result<Value> {
        let request = pb::GetRequest {
            namespace: options.namespace,
            path: path.to_string(),
            secrets: options.secrets,
            revision: options.revision.unwrap_or(0),
        };
        let response = self
            .cluster
            .call("get the configuration", |channel| {
                let request = request.clone();
                async move { ConfigClient::new(channel).get(request).await }
            })
            .await?
            .into_inner();
        value(&response.value, response.revision)
    }

    async fn set(&self, path: &str, json: serde_json::Value, options: SetOptions) -> Result<i64> {
        // The one check made here: serialising recurses, so a value deeper than any document
        // may be is refused before (the cluster checks the rest, the exact depth included).
        super::tree::check_depth(0, &json)?;
        let request = pb::SetRequest {
            namespace: options.namespace,
            path: path.to_string(),
            value: json.to_string(),
            secret: options.secret,
        };
        let response = self
            .cluster
            .call("set the configuration", |channel| {
                let request = request.clone();
                async move { ConfigClient::new(channel).set(request).await }
            })
            .await?;
        Ok(response.into_inner().revision)
    }

    async fn delete(&self, path: &str, options: DeleteOptions) -> Result<i64> {
        let request = pb::DeleteConfigRequest { namespace: options.namespace, path: path.to_string() };
        let response = self
            .cluster
            .call("delete from the configuration", |channel| {
                let request = request.clone();
                async move { ConfigClient::new(channel).delete(request).await }
            })
            .await?;
        Ok(response.into_inner().revision)
    }

    async fn watch(&self, path: &str, options: WatchOptions) -> Result<Box<dyn ConfigWatcher>> {
        let request =
            pb::WatchConfigRequest { namespace: options.namespace, path: path.to_string(), secrets: options.secrets };
        let (member, stream, first) = self.open_watch(&request).await?;
        Ok(Box::new(GrpcWatcher {
            config: self.clone(),
            request,
            stream: Some((member, stream)),
            first: Some(first),
            last: None,
            stopped: false,
        }))
    }
}

/// A value from the cluster's JSON text.
fn value(text: &str, revision: i64) -> Result<Value> {
    let json = serde_json::from_str(text)
        .map_err(|error| Error::InvalidResponse(format!("configuration value {text:?} is not JSON: {error}")))?;
    Ok(Value::at_revision(json, revision))
}

struct GrpcWatcher {
    config: GrpcConfig,
    request: pb::WatchConfigRequest,
    /// The open stream and the member serving it; None after it broke (reopened by `next`).
    stream: Option<(usize, Streaming<pb::WatchConfigResponse>)>,
    /// A value to return before reading the stream: the first of a (re)opened watch.
    first: Option<Value>,
    /// The last value returned, to drop the first value of a reopened watch when nothing changed.
    last: Option<serde_json::Value>,
    stopped: bool,
}

impl GrpcWatcher {
    fn deliver(&mut self, value: Value) -> Value {
        self.last = Some(value.json().clone());
        value
    }
}

#[async_trait]
impl ConfigWatcher for GrpcWatcher {
    async fn next(&mut self) -> Result<Value> {
        loop {
            if self.stopped {
                return Err(Error::WatchStopped);
            }
            if let Some(first) = self.first.take() {
                if self.last.as_ref() == Some(first.json()) {
                    continue;
                }
                return Ok(self.deliver(first));
            }
            let Some((member, stream)) = &mut self.stream else {
                let (member, stream, first) = self.config.open_watch(&self.request).await?;
                self.stream = Some((member, stream));
                self.first = Some(first);
                continue;
            };
            let member = *member;
            let reason = match stream.message().await {
                Ok(Some(response)) => {
                    let value = value(&response.value, response.revision)?;
                    return Ok(self.deliver(value));
                }
                Ok(None) => "the member ended the stream".to_string(),
                Err(status) if cluster::is_member_failure(&status) => status.to_string(),
                Err(status) => {
                    // The stream is over; the next call opens a new one (and reports again).
                    self.stream = None;
                    return Err(cluster::from_status(status));
                }
            };
            tracing::warn!(
                endpoint = self.config.cluster.url(member),
                path = self.request.path,
                "config watch broke ({reason}); opening it again on another member"
            );
            self.config.cluster.fail_over_from(member);
            self.stream = None;
        }
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.stream = None;
        self.first = None;
    }
}
