//! The configuration contract as one suite, run against every implementation: `MemoryConfig` in
//! keel-client's tests, `GrpcConfig` against a real cluster. It panics on the first broken
//! expectation, saying which.
//!
//! Safe on a shared configuration: it writes only into namespaces named
//! `conformance-<random>-...` and deletes them at the end of each case.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::json;

use super::{
    Config, ConfigWatcher, DeleteOptions, GetOptions, SetOptions, Value, WatchOptions, DEPTH_MAX, SECRET_MASK,
};
use crate::error::Error;

/// How long a watcher may take to see a change.
const WAIT: Duration = Duration::from_secs(10);

/// Runs every case against `config`.
pub async fn run(config: Arc<dyn Config>) {
    let run = format!("conformance-{:08x}", rand::rng().random::<u32>());
    get_of_nothing_is_not_found(&*config, &run).await;
    objects_merge_and_other_values_replace(&*config, &run).await;
    delete_removes_the_subtree(&*config, &run).await;
    namespaces_are_apart(&*config, &run).await;
    secrets_are_masked_unless_asked(&*config, &run).await;
    typed_values(&*config, &run).await;
    past_revisions_read_as_they_were(&*config, &run).await;
    watch_sees_every_change_below_its_path(&*config, &run).await;
    invalid_requests_are_rejected(&*config, &run).await;
}

fn namespace(run: &str, case: &str) -> String {
    format!("{run}-{case}")
}

async fn get(config: &dyn Config, namespace: &str, path: &str) -> Option<serde_json::Value> {
    let options = GetOptions { namespace: namespace.into(), ..GetOptions::default() };
    match config.get_with(path, options).await {
        Ok(value) => Some(value.into_json()),
        Err(Error::NotFound) => None,
        Err(error) => panic!("get {namespace}:{path:?}: {error}"),
    }
}

async fn set(config: &dyn Config, namespace: &str, path: &str, value: serde_json::Value) -> i64 {
    let options = SetOptions { namespace: namespace.into(), ..SetOptions::default() };
    config.set(path, value, options).await.unwrap_or_else(|error| panic!("set {namespace}:{path:?}: {error}"))
}

async fn delete(config: &dyn Config, namespace: &str, path: &str) {
    let options = DeleteOptions { namespace: namespace.into() };
    config.delete(path, options).await.unwrap_or_else(|error| panic!("delete {namespace}:{path:?}: {error}"));
}

async fn get_of_nothing_is_not_found(config: &dyn Config, run: &str) {
    let namespace = namespace(run, "empty");
    for path in ["", "app", "app.db.host"] {
        assert_eq!(get(config, &namespace, path).await, None, "get {path:?} of an empty namespace");
    }
    let result = config.get(&format!("{run}.never.set")).await;
    assert_eq!(result, Err(Error::NotFound), "get in the default namespace of a path never set");
}

async fn objects_merge_and_other_values_replace(config: &dyn Config, run: &str) {
    let ns = namespace(run, "merge");
    set(config, &ns, "app", json!({"db": {"host": "db0"}, "name": "shop"})).await;
    assert_eq!(get(config, &ns, "app.db.host").await, Some(json!("db0")), "a leaf");
    assert_eq!(get(config, &ns, "app.db").await, Some(json!({"host": "db0"})), "an object from its leaves");

    set(config, &ns, "app.db", json!({"port": 5432})).await;
    let merged = json!({"db": {"host": "db0", "port": 5432}, "name": "shop"});
    assert_eq!(get(config, &ns, "app").await, Some(merged.clone()), "an object merges leaf by leaf");
    assert_eq!(get(config, &ns, "").await, Some(json!({ "app": merged })), "the empty path is the namespace");

    set(config, &ns, "app.db", json!(["db1", "db2"])).await;
    assert_eq!(get(config, &ns, "app").await, Some(json!({"db": ["db1", "db2"], "name": "shop"})), "a list replaces");
    set(config, &ns, "app.db.host", json!("db3")).await;
    assert_eq!(get(config, &ns, "app.db").await, Some(json!({"host": "db3"})), "a leaf below a leaf replaces it");
    set(config, &ns, "app", json!({})).await;
    assert_eq!(get(config, &ns, "app.name").await, Some(json!("shop")), "an empty object changes nothing");
    set(config, &ns, "app.name", json!(null)).await;
    assert_eq!(get(config, &ns, "app.name").await, Some(json!(null)), "null is a value like any other");
    assert_eq!(get(config, &ns, "ap").await, None, "a key prefix is not a path");

    delete(config, &ns, "").await;
}

async fn delete_removes_the_subtree(config: &dyn Config, run: &str) {
    let ns = namespace(run, "delete");
    set(config, &ns, "", json!({"app": {"db": {"host": "h", "port": 1}, "name": "n"}, "other": true})).await;
    delete(config, &ns, "app.db").await;
    assert_eq!(get(config, &ns, "app").await, Some(json!({"name": "n"})), "the subtree is gone, its sibling stays");
    assert_eq!(get(config, &ns, "app.db.host").await, None);
    delete(config, &ns, "app.db").await;
    delete(config, &ns, "never.there").await;
    delete(config, &ns, "").await;
    assert_eq!(get(config, &ns, "").await, None, "deleting the root empties the namespace");
}

async fn namespaces_are_apart(config: &dyn Config, run: &str) {
    let (one, two) = (namespace(run, "one"), namespace(run, "two"));
    set(config, &one, "app.db.host", json!("one")).await;
    set(config, &two, "app.db.host", json!("two")).await;
    assert_eq!(get(config, &one, "app").await, Some(json!({"db": {"host": "one"}})));
    assert_eq!(get(config, &two, "app").await, Some(json!({"db": {"host": "two"}})));
    delete(config, &one, "").await;
    assert_eq!(get(config, &two, "app.db.host").await, Some(json!("two")), "deleting one namespace spares another");
    delete(config, &two, "").await;
}

async fn secrets_are_masked_unless_asked(config: &dyn Config, run: &str) {
    let ns = namespace(run, "secrets");
    let secret = SetOptions { namespace: ns.clone(), secret: true };
    set(config, &ns, "db.user", json!("admin")).await;
    config.set("db.password", json!("pw"), secret.clone()).await.expect("set a secret leaf");
    config.set("api", json!({"token": "t0k", "retries": 3}), secret).await.expect("set a secret object");

    assert_eq!(get(config, &ns, "db.password").await, Some(json!(SECRET_MASK)), "a secret leaf is masked");
    assert_eq!(get(config, &ns, "db").await, Some(json!({"user": "admin", "password": SECRET_MASK})));
    assert_eq!(get(config, &ns, "api").await, Some(json!({"token": SECRET_MASK, "retries": SECRET_MASK})));
    let in_clear = GetOptions { namespace: ns.clone(), secrets: true, ..GetOptions::default() };
    let db = config.get_with("db", in_clear.clone()).await.expect("get in clear").into_json();
    let api = config.get_with("api", in_clear).await.expect("get in clear").into_json();
    assert_eq!(db, json!({"user": "admin", "password": "pw"}), "secrets in clear when asked");
    assert_eq!(api, json!({"token": "t0k", "retries": 3}), "types survive encryption");

    set(config, &ns, "db.password", json!("plain")).await;
    assert_eq!(get(config, &ns, "db.password").await, Some(json!("plain")), "a plain set replaces a secret");
    delete(config, &ns, "").await;
}

async fn typed_values(config: &dyn Config, run: &str) {
    let ns = namespace(run, "typed");
    set(config, &ns, "server", json!({"host": "0.0.0.0", "port": 8080, "debug": true, "timeout": "10s", "retry": 3}))
        .await;
    let options = GetOptions { namespace: ns.clone(), ..GetOptions::default() };
    let server: Value = config.get_with("server", options).await.expect("get");
    assert!(server.revision() > 0, "a value read from a configuration has a revision");
    assert_eq!(server.get("host").string("localhost"), "0.0.0.0");
    assert_eq!(server.get("port").int(0), 8080);
    assert!(server.get("debug").bool(false));
    assert_eq!(server.get("timeout").duration(Duration::ZERO), Duration::from_secs(10));
    assert_eq!(server.get("retry").duration(Duration::ZERO), Duration::from_secs(3));
    assert_eq!(server.get("missing").string("fallback"), "fallback");

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Server {
        host: String,
        port: u16,
    }
    let scanned: Server = server.scan().expect("scan into a struct");
    assert_eq!(scanned, Server { host: "0.0.0.0".into(), port: 8080 });
    assert!(matches!(server.get("host").scan::<u16>(), Err(Error::Decode(_))), "scan says what does not fit");
    delete(config, &ns, "").await;
}

async fn past_revisions_read_as_they_were(config: &dyn Config, run: &str) {
    let ns = namespace(run, "history");
    let first = set(config, &ns, "feature.enabled", json!(false)).await;
    let second = set(config, &ns, "feature.enabled", json!(true)).await;
    assert!(second > first, "each change has a newer revision: {first} then {second}");
    let at = |revision: i64| GetOptions { namespace: ns.clone(), revision: Some(revision), ..GetOptions::default() };
    let then = config.get_with("feature", at(first)).await.expect("get at the first revision");
    assert_eq!(then.json(), &json!({"enabled": false}), "as of revision {first}");
    let now = config.get_with("feature", at(second)).await.expect("get at the second revision");
    assert_eq!(now.json(), &json!({"enabled": true}), "as of revision {second}");
    let before = config.get_with("feature", at(first - 1)).await;
    assert_eq!(before, Err(Error::NotFound), "before the first set there was nothing");
    let future = config.get_with("feature", at(second + 1_000_000)).await;
    assert!(matches!(future, Err(Error::Other { .. })), "a future revision is refused: {future:?}");
    delete(config, &ns, "").await;
}

async fn next_value(watcher: &mut dyn ConfigWatcher, what: &str) -> serde_json::Value {
    let next = tokio::time::timeout(WAIT, watcher.next()).await;
    let next = next.unwrap_or_else(|_| panic!("no watch value within {WAIT:?}: {what}"));
    next.unwrap_or_else(|error| panic!("watch failed ({what}): {error}")).into_json()
}

async fn watch_sees_every_change_below_its_path(config: &dyn Config, run: &str) {
    let ns = namespace(run, "watch");
    set(config, &ns, "app.db.host", json!("db0")).await;
    let options = WatchOptions { namespace: ns.clone(), ..WatchOptions::default() };
    let mut db = config.watch("app.db", options.clone()).await.expect("watch app.db");
    let mut fresh = config.watch("fresh", options.clone()).await.expect("watch a path never set");
    let mut secrets = config.watch("app.db", WatchOptions { secrets: true, ..options }).await.expect("watch in clear");

    assert_eq!(next_value(db.as_mut(), "the current value").await, json!({"host": "db0"}));
    assert_eq!(next_value(fresh.as_mut(), "the current value").await, json!(null), "nothing there yet: null");

    // Changes elsewhere are not reported; each change at or below the path is, in order.
    set(config, &ns, "app.name", json!("shop")).await;
    set(config, &ns, "app.db.host", json!("db1")).await;
    set(config, &ns, "app.db", json!({"port": 5432})).await;
    config
        .set("app.db.password", json!("pw"), SetOptions { namespace: ns.clone(), secret: true })
        .await
        .expect("set a secret");
    delete(config, &ns, "app.db").await;
    set(config, &ns, "fresh", json!(1)).await;
    let expected = [
        json!({"host": "db1"}),
        json!({"host": "db1", "port": 5432}),
        json!({"host": "db1", "port": 5432, "password": SECRET_MASK}),
        json!(null),
    ];
    for (index, value) in expected.iter().enumerate() {
        assert_eq!(&next_value(db.as_mut(), "a change").await, value, "change {index} of app.db");
    }
    assert_eq!(next_value(fresh.as_mut(), "the first set").await, json!(1), "a watch of a new path");
    assert_eq!(next_value(secrets.as_mut(), "the current value").await, json!({"host": "db0"}));
    let mut revealed = Vec::new();
    for _ in 0..3 {
        revealed.push(next_value(secrets.as_mut(), "a change").await);
    }
    assert_eq!(revealed[2], json!({"host": "db1", "port": 5432, "password": "pw"}), "secrets in clear when asked");

    db.stop();
    assert_eq!(db.next().await, Err(Error::WatchStopped), "next after stop");
    delete(config, &ns, "").await;
}

async fn invalid_requests_are_rejected(config: &dyn Config, run: &str) {
    let ns = namespace(run, "invalid");
    let options = || SetOptions { namespace: ns.clone(), ..SetOptions::default() };
    let too_deep_path = vec!["a"; DEPTH_MAX + 1].join(".");
    let twenty_thousand = vec!["a"; 20_000].join(".");
    // 63 objects below app.db: 65 levels with the path's two segments.
    let too_deep_value = (0..DEPTH_MAX - 1).fold(json!(1), |inner, _| json!({ "k": inner }));
    let cases = [
        ("an empty segment", "app..db", json!(1), options()),
        ("a leading dot", ".app", json!(1), options()),
        ("a '/' in a segment", "app/db", json!(1), options()),
        ("a non-object at the root", "", json!("x"), options()),
        ("an empty object key", "app", json!({"": 1}), options()),
        ("a namespace with '/'", "app", json!(1), SetOptions { namespace: "a/b".into(), ..options() }),
        ("a NUL in a segment", "app.d\0b", json!(1), options()),
        ("a control character in an object key", "app", json!({"k\u{1b}": 1}), options()),
        ("a namespace with NUL", "app", json!(1), SetOptions { namespace: "a\0b".into(), ..options() }),
        ("a path deeper than DEPTH_MAX", too_deep_path.as_str(), json!(1), options()),
        ("a value nesting past DEPTH_MAX", "app.db", too_deep_value.clone(), options()),
        ("20,000 segments", twenty_thousand.as_str(), json!(1), options()),
    ];
    for (what, path, value, options) in cases {
        let result = config.set(path, value, options).await;
        assert!(matches!(result, Err(Error::InvalidArgument(_))), "set with {what}: {result:?}");
    }
    let get = config.get_with("a..b", GetOptions { namespace: ns.clone(), ..GetOptions::default() }).await;
    assert!(matches!(get, Err(Error::InvalidArgument(_))), "get of a bad path: {get:?}");
    assert_eq!(self::get(config, &ns, "").await, None, "refused sets wrote nothing");

    // The deepest allowed, and object keys with dots (a document keyed by service names).
    let deepest = (0..DEPTH_MAX - 2).fold(json!(1), |inner, _| json!({ "k": inner }));
    set(config, &ns, "app.db", deepest.clone()).await;
    assert_eq!(self::get(config, &ns, "app.db").await, Some(deepest), "DEPTH_MAX levels make the round trip");
    set(config, &ns, "services", json!({"go.micro.srv.greeter": {"address": "127.0.0.1:8080"}})).await;
    let services = self::get(config, &ns, "services").await;
    assert_eq!(services, Some(json!({"go.micro.srv.greeter": {"address": "127.0.0.1:8080"}})));
    delete(config, &ns, "").await;
}
