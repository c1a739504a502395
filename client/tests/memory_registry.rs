//! MemoryRegistry against the shared registry contract, plus what only the in-memory registry
//! can show cheaply: a lost lease is registered again, a slow watcher is told it lagged.

use std::sync::Arc;
use std::time::Duration;

use keel_client::registry::{
    conformance, Action, MemoryRegistry, Node, RegisterOptions, Registry, Service, WatchOptions,
};
use keel_client::Error;

#[tokio::test(start_paused = true)]
async fn memory_registry_passes_the_conformance_suite() {
    conformance::run(Arc::new(MemoryRegistry::new())).await;
}

#[tokio::test]
async fn memory_registry_passes_the_conformance_suite_in_real_time() {
    // The same suite on the real clock: the keeper and expiry tasks must not depend on time
    // being paused. Takes about five seconds (its TTL waits).
    conformance::run(Arc::new(MemoryRegistry::new())).await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_is_registered_again() {
    let registry = MemoryRegistry::new();
    let greeter = Service::with_node("greeter", "1", Node::new("greeter-1", "127.0.0.1:1"));
    let mut registration = registry
        .keep_registered(&greeter, RegisterOptions::with_ttl(Duration::from_secs(3)))
        .await
        .expect("keep_registered");
    let mut watcher = registry.watch(WatchOptions::service("greeter")).await.expect("watch");
    let lost_lease_id = registration.status().lease_id;

    // Phase 1: the lease is revoked behind the keeper's back, as a cluster does when a
    // partition outlasts the TTL.
    assert!(registry.revoke_lease(lost_lease_id));
    assert_eq!(watcher.next().await.map(|result| result.action), Ok(Action::Delete));

    // Phase 2: at its next keep-alive the keeper finds the lease gone and registers again.
    let status = registration.wait_for(|status| status.re_registrations == 1 && status.registered).await;
    let status = status.expect("the keeper is running");
    assert_ne!(status.lease_id, lost_lease_id, "a new lease");
    assert_eq!(watcher.next().await.map(|result| result.action), Ok(Action::Create));
    assert_eq!(registry.get_service("greeter").await, Ok(vec![greeter]));

    registration.shutdown().await.expect("shutdown");
    assert_eq!(watcher.next().await.map(|result| result.action), Ok(Action::Delete));
}

#[tokio::test(start_paused = true)]
async fn registrations_without_keep_alive_expire_on_time() {
    let registry = MemoryRegistry::new();
    let service = Service::with_node("s", "1", Node::new("n", "127.0.0.1:1"));
    registry.register(&service, RegisterOptions::with_ttl(Duration::from_millis(1500))).await.expect("register");

    // The TTL is rounded up to whole seconds, as the cluster counts it: 2 s.
    tokio::time::advance(Duration::from_millis(1900)).await;
    assert!(registry.get_service("s").await.is_ok(), "alive before 2 s");
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(registry.get_service("s").await, Err(Error::NotFound), "expired after 2 s");
}

#[tokio::test]
async fn re_registering_with_the_same_ttl_keeps_the_lease() {
    let registry = MemoryRegistry::new();
    let service = Service::with_node("s", "1", Node::new("n", "127.0.0.1:1"));
    let options = RegisterOptions::with_ttl(Duration::from_secs(30));
    let first = registry.keep_registered(&service, options).await.expect("first");
    let second = registry.keep_registered(&service, options).await.expect("second");
    assert_eq!(first.status().lease_id, second.status().lease_id);
    first.shutdown().await.expect("shutdown");
    second.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_told() {
    let registry = MemoryRegistry::new();
    let mut watcher = registry.watch(WatchOptions::default()).await.expect("watch");
    let events = keel_client::registry::WATCH_EVENTS_MAX + 10;
    for index in 0..events {
        let service = Service::with_node("s", "1", Node::new(format!("n{index}"), "127.0.0.1:1"));
        registry.register(&service, RegisterOptions::default()).await.expect("register");
    }
    assert_eq!(watcher.next().await, Err(Error::WatchLagged { skipped: 10 }));
    // Then it carries on from the oldest change still kept.
    assert_eq!(watcher.next().await.map(|result| result.service.nodes[0].id.clone()), Ok("n10".to_string()));
}

#[tokio::test]
async fn invalid_registrations_say_what_is_wrong() {
    let registry = MemoryRegistry::new();
    let no_id = Service::with_node("s", "1", Node::new("", "127.0.0.1:1"));
    let result = registry.register(&no_id, RegisterOptions::default()).await;
    assert_eq!(result, Err(Error::InvalidArgument("registry: node id is empty".into())));
    let message = Error::Unavailable("x".into()).to_string();
    assert!(message.starts_with("cluster unavailable"), "{message}");
}
