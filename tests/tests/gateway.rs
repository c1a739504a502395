//! `keel gateway` in front of the gRPC greeter example: HTTP/JSON in, gRPC through the
//! service's reflected schema out; new nodes used and deregistered or unreachable ones left out
//! as the registry changes; every kind of bad request answered with micro's error JSON and the
//! status grpc-gateway would give.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use keel_client::auth::{Access, Auth, GenerateOptions, GrpcAuth, Resource, Rule, TokenOptions};
use keel_client::config::{Config, DeleteOptions, GrpcConfig, SetOptions};
use keel_client::registry::{Endpoint, GrpcRegistry, Node, RegisterOptions, Registry, Service};
use keel_proto::greeter;
use keel_proto::greeter::say_client::SayClient;
use keel_tests::{keelctl, wait_for, wait_for_some, ReservedPort, Server, TestCluster};
use nix::sys::signal::{kill, Signal};

#[path = "support/front_door.rs"]
mod front_door;

use front_door::{EchoServer, Gateway, Greeter, WAIT};

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_follows_the_registry_to_the_greeters() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    let gateway = Gateway::start(&url, &[]).await;

    // Phase 1: one greeter; curl's request through the gateway reaches it.
    let first = Greeter::start(&url, &[]).await;
    let answer = wait_for_some(WAIT, "the gateway to route to the first greeter", || {
        let answer = gateway.post("/greeter/say/hello", r#"{"name":"Ada"}"#);
        async move { (answer.status == 200).then_some(answer) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; gateway: {}", gateway.process.stderr()));
    assert_eq!(answer.json(), serde_json::json!({ "msg": format!("Hello Ada from {}", first.node_id) }));
    assert_eq!(answer.header("content-type"), Some("application/json"));

    // Phase 2: a second greeter is used as soon as the registry watch brings it.
    let second = Greeter::start(&url, &[]).await;
    let registered = Instant::now();
    let picked_up = wait_for(WAIT, "the gateway to use the second greeter", || {
        let answer = gateway.post("/greeter/say/hello", r#"{"name":"Ada"}"#);
        let node_id = second.node_id.clone();
        async move { answer.body.contains(&node_id) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("the second greeter was used {:?} after it registered ({picked_up:?} of polling)", registered.elapsed());
    let seen = answering_nodes(&gateway, 6);
    assert_eq!(seen, BTreeSet::from([first.node_id.clone(), second.node_id.clone()]), "round-robin uses both");

    // Phase 3: a node that refuses connections is skipped and ejected; no request fails.
    let registry = GrpcRegistry::connect(std::slice::from_ref(&url)).await.expect("registry");
    let dead_port = ReservedPort::new();
    let dead =
        Service::with_node("greeter", "1.0.0", Node::new("greeter-dead", format!("127.0.0.1:{}", dead_port.port())));
    registry.register(&dead, RegisterOptions::with_ttl(Duration::from_secs(60))).await.expect("register the dead node");
    for _ in 0..9 {
        let answer = gateway.post("/greeter/say/hello", r#"{"name":"Ada"}"#);
        assert_eq!(answer.status, 200, "a dead node is skipped: {}", answer.body);
    }

    // Phase 4: a deregistered greeter is no longer chosen.
    kill(first.process.pid(), Signal::SIGTERM).expect("SIGTERM the first greeter");
    first
        .process
        .wait_for_stdout(WAIT, "the first greeter to deregister", |out| out.contains("deregistered"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(WAIT, "the gateway to stop using the first greeter", || {
        let only_second = answering_nodes(&gateway, 4) == BTreeSet::from([second.node_id.clone()]);
        async move { only_second }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answering_nodes(&gateway, 10), BTreeSet::from([second.node_id.clone()]));

    // Phase 5: a service whose every node refuses connections: 503, naming why.
    let ghost = Service::with_node("ghost", "1.0.0", Node::new("ghost-1", format!("127.0.0.1:{}", dead_port.port())));
    registry.register(&ghost, RegisterOptions::with_ttl(Duration::from_secs(60))).await.expect("register the ghost");
    let answer = wait_for_some(WAIT, "the ghost to be known", || {
        let answer = gateway.post("/ghost/say/hello", "{}");
        async move { (answer.status != 404).then_some(answer) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status, 503, "the ghost cannot be reached: {}", answer.body);
    assert!(answer.detail().contains("no node could be reached"), "{}", answer.body);
    let answer = gateway.post("/ghost/say/hello", "{}");
    assert_eq!(answer.status, 503, "the ghost's only node is ejected: {}", answer.body);
    assert!(answer.detail().contains("no healthy node"), "{}", answer.body);

    // Phase 6: a service without reflection: 502 naming the cause.
    let _mute = Greeter::start(&url, &[("GREETER_REFLECTION", "off"), ("GREETER_NAME", "mute")]).await;
    let answer = wait_for_some(WAIT, "the mute greeter to be known", || {
        let answer = gateway.post("/mute/say/hello", "{}");
        async move { (answer.status != 404).then_some(answer) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert!(answer.detail().contains("does not serve gRPC server reflection"), "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_micro_errors_and_grpc_gateway_statuses() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    let gateway = Gateway::start(&url, &["--max-body-bytes", "1024", "--body-timeout-ms", "500"]).await;
    let _greeter = Greeter::start(&url, &[]).await;
    wait_for(WAIT, "the gateway to route to the greeter", || {
        let answer = gateway.post("/greeter/say/hello", "{}");
        async move { answer.status == 200 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let cases: &[(&str, &str, u16, &str)] = &[
        ("/greeter/say/hello", r#"{"name":"#, 400, "is not a greeter.Request in JSON"),
        ("/greeter/say/hello", r#"{"nom":"Ada"}"#, 400, "nom"),
        ("/greeter/say/hello", r#"{"name":42}"#, 400, "is not a greeter.Request in JSON"),
        ("/greeter/say/hello", r#"{"name":"Ada"} trailing"#, 400, "trailing"),
        ("/greeter/say/hello", r#"{"name":"error"}"#, 400, "is not greeted"),
        ("/greeter/say/goodbye", "{}", 404, "has no endpoint Say.Goodbye"),
        ("/nosuch/say/hello", "{}", 404, "service nosuch not found"),
        ("/greeter/../nosuch/hello", "{}", 400, "'..'"),
        ("//greeter/say/hello", "{}", 400, "'..'"),
        ("/greeter/say/hello%2e", "{}", 400, "is not a name"),
        ("/", "{}", 400, "the path is empty"),
    ];
    for (path, body, status, detail) in cases {
        let answer = gateway.post(path, body);
        assert_eq!(answer.status, *status, "{path} {body}: {}", answer.body);
        assert_eq!(answer.json()["code"], *status, "{path}: micro's error JSON: {}", answer.body);
        assert!(answer.detail().contains(detail), "{path} {body}: {:?} should say {detail:?}", answer.detail());
    }

    // A streaming method: the body is a sequence of requests, the answer one line per response.
    let answer = gateway.post("/greeter/say/stream", "{\"name\":\"Ada\"}\n{\"name\":\"Bob\"}\n");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let results: Vec<&str> = answer.body.lines().filter(|line| line.starts_with("{\"result\"")).collect();
    assert_eq!(results.len(), 2, "{}", answer.body);
    assert!(results[0].starts_with(r#"{"result":{"msg":"Hello Ada from greeter-"#), "{}", results[0]);
    assert!(results[1].starts_with(r#"{"result":{"msg":"Hello Bob from greeter-"#), "{}", results[1]);
    let answer = gateway.post("/greeter/say/stream", "{\"name\":\"Ada\"} {\"nom\":1}");
    assert_eq!(answer.status, 400, "{}", answer.body);

    let over = format!(r#"{{"name":"{}"}}"#, "a".repeat(2048));
    let answer = gateway.post("/greeter/say/hello", &over);
    assert_eq!(answer.status, 413, "{}", answer.body);

    // A body that never ends: the gateway stops waiting and says so.
    let answer = gateway
        .send("POST /greeter/say/hello HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"na");
    assert_eq!(answer.status, 408, "{}", answer.body);

    // Micro-Namespace prefixes the service micro's rule names.
    let request = "POST /say/hello HTTP/1.1\r\nHost: gw\r\nMicro-Namespace: greeter\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let answer = gateway.send(request);
    assert_eq!((answer.status, answer.detail()), (404, "service greeter.say not found".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn handler_http_services_get_the_request_as_it_came() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    let gateway = Gateway::start(&url, &[]).await;
    let web = EchoServer::start();
    let dead_port = ReservedPort::new();
    let registry = GrpcRegistry::connect(std::slice::from_ref(&url)).await.expect("registry");
    let mut endpoint = Endpoint { name: "Web.Serve".into(), ..Default::default() };
    endpoint.metadata.insert("path".into(), "^/web/".into());
    endpoint.metadata.insert("handler".into(), "http".into());
    // Two nodes, one refusing connections: requests that never reached it go to the other.
    let mut service =
        Service::with_node("web", "1.0.0", Node::new("web-dead", format!("127.0.0.1:{}", dead_port.port())));
    service.nodes.push(Node::new("web-1", web.address.clone()));
    service.endpoints = vec![endpoint];
    registry.register(&service, RegisterOptions::with_ttl(Duration::from_secs(60))).await.expect("register");

    let request = "PUT /web/page?x=1&y=2 HTTP/1.1\r\nHost: shop.example\r\nX-Custom: kept\r\n\
                   Micro-Account-Id: forged\r\nConnection: close, x-hop\r\nX-Hop: dropped\r\n\
                   Content-Length: 5\r\n\r\nhello";
    let answer = wait_for_some(WAIT, "the gateway to pass the request to the web service", || {
        let answer = gateway.send(request);
        async move { (answer.status == 200).then_some(answer) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let seen = answer.body.to_ascii_lowercase();
    assert!(seen.starts_with("put /web/page?x=1&y=2 http/1.1\r\n"), "path and query unchanged: {seen}");
    assert!(seen.contains("\r\nhost: shop.example\r\n"), "{seen}");
    assert!(seen.contains("\r\nx-custom: kept\r\n"), "{seen}");
    assert!(seen.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"), "{seen}");
    assert!(!seen.contains("x-hop") && !seen.contains("forged"), "hop-by-hop and forged headers dropped: {seen}");
    assert!(seen.ends_with("\r\n\r\nhello"), "{seen}");
    assert_eq!(answer.header("x-served-by"), Some("echo"), "the service's headers come back");
    for _ in 0..4 {
        assert_eq!(gateway.post("/web/again", "").status, 200, "the refusing node is skipped");
    }

    // The service stops: a node that refuses and no other is a 503 naming the cause.
    drop(web);
    let answer = wait_for_some(WAIT, "the gateway to find no node", || {
        let answer = gateway.post("/web/page", "");
        async move { (answer.status == 503).then_some(answer) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(answer.detail().starts_with("service web: no"), "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_greeter_answers_through_the_gateway_on_kept_connections() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    let gateway = Gateway::start(&url, &[]).await;
    let greeter = Greeter::start_example("greeter_http", &url, &[]).await;
    let answer = wait_for_some(WAIT, "the gateway to route to the HTTP greeter", || {
        let answer = gateway.post("/greeter-web/say/hello", r#"{"name":"Ada"}"#);
        async move { (answer.status == 200).then_some(answer) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; gateway: {}", gateway.process.stderr()));
    assert_eq!(answer.json(), serde_json::json!({ "msg": format!("Hello Ada from {}", greeter.node_id) }));
    // Calls in a row go over the connections the gateway keeps to the node.
    for name in ["Bo", "Cy", "Di", "Ed", "Flo"] {
        let answer = gateway.post("/greeter-web/say/hello", &format!(r#"{{"name":"{name}"}}"#));
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()["msg"], format!("Hello {name} from {}", greeter.node_id));
    }

    // The node goes while still registered: its kept connections close, a new one is refused,
    // and the caller learns why.
    drop(greeter);
    let answer = wait_for_some(WAIT, "the gateway to find the node gone", || {
        let answer = gateway.post("/greeter-web/say/hello", r#"{"name":"Ada"}"#);
        async move { (answer.status == 503).then_some(answer) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(answer.detail().starts_with("service greeter-web: no"), "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_auth_the_gateway_lets_in_only_whom_the_rules_let_in_and_rules_apply_live() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    let auth = GrpcAuth::connect(std::slice::from_ref(&url)).await.expect("auth");
    let mut tokens = Vec::new();
    for (id, scope) in [("ada", "greeters"), ("bob", "visitors")] {
        let options =
            GenerateOptions { scopes: vec![scope.into()], secret: Some(format!("{id}-secret")), ..Default::default() };
        auth.generate(id, options).await.expect("account");
        let token = auth.token(TokenOptions::with_secret(id, format!("{id}-secret"))).await.expect("token");
        tokens.push(token.access_token);
    }
    let (ada, bob) = (&tokens[0], &tokens[1]);
    auth.grant(greet_rule("greeters-say-hello", "greeters")).await.expect("rule");
    let gateway = Gateway::start(&url, &["--auth"]).await;
    let _greeter = Greeter::start(&url, &[]).await;

    let as_caller = |token: Option<&str>| {
        let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let body = r#"{"name":"Ada"}"#;
        let request = format!(
            "POST /greeter/say/hello HTTP/1.1\r\nHost: gw\r\n{authorization}Micro-Account-Id: mallory\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        gateway.send(&request)
    };
    let last = std::cell::RefCell::new(String::new());
    let answer = wait_for_some(WAIT, "ada to be let through to the greeter", || {
        let answer = as_caller(Some(ada));
        last.replace(format!("{} {}", answer.status, answer.body));
        async move { (answer.status == 200).then_some(answer) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; the last answer: {}", last.borrow()));
    assert!(answer.json()["msg"].as_str().unwrap_or_default().ends_with("(to account ada)"), "{}", answer.body);

    let anonymous = as_caller(None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert!(anonymous.detail().contains("not public"), "{}", anonymous.body);
    let forged = as_caller(Some("not-a-token"));
    assert_eq!(forged.status, 401, "{}", forged.body);
    let refused = as_caller(Some(bob));
    assert_eq!((refused.status, refused.detail()), (403, "account bob may not reach greeter Say.Hello".to_string()));
    let unknown = as_caller(None);
    assert_eq!(unknown.status, 401, "nothing about services is told to strangers");

    // A rule granted now reaches the gateway without a restart.
    auth.grant(greet_rule("visitors-say-hello", "visitors")).await.expect("rule");
    let waited = wait_for(WAIT, "bob to be let in by the new rule", || {
        let answer = as_caller(Some(bob));
        async move { answer.status == 200 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("the new rule applied after {waited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_come_from_config_and_change_live() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    let gateway = Gateway::start(&url, &[]).await;
    let _greeter = Greeter::start(&url, &[]).await;
    let hello = || gateway.post("/greeter/say/hello", r#"{"name":"Ada"}"#);
    wait_for(WAIT, "the gateway to route to the greeter", || {
        let answer = hello();
        async move { answer.status == 200 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // One request a second, two at once: a quick run of requests meets the limit.
    let config = GrpcConfig::connect(std::slice::from_ref(&url)).await.expect("config");
    let gateway_ns = SetOptions { namespace: "gateway".into(), ..Default::default() };
    let limits = serde_json::json!({
        "endpoints": [{ "service": "greeter", "endpoint": "Say.Hello", "per_second": 1, "burst": 2 }]
    });
    config.set("limits", limits, gateway_ns.clone()).await.expect("set the limits");
    let limited = wait_for_some(WAIT, "a request over the limit", || {
        let answer = hello();
        async move { (answer.status == 429).then_some(answer) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(limited.header("retry-after"), Some("1"), "{}", limited.head);
    assert_eq!(limited.detail(), "greeter Say.Hello: over the rate limit");
    assert_eq!(gateway.post("/greeter/say/other", "{}").status, 404, "other endpoints are not limited");

    // Lifting the limit takes effect without a restart.
    config.delete("limits", DeleteOptions { namespace: "gateway".into() }).await.expect("delete the limits");
    wait_for(WAIT, "the limit to be lifted", || {
        let all_pass = (0..5).all(|_| hello().status == 200);
        async move { all_pass }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_services_own_limiter_layer_refuses_past_its_rate() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    let gateway = Gateway::start(&url, &[]).await;
    let _greeter = Greeter::start(&url, &[("GREETER_RATE_PER_SECOND", "1")]).await;
    // The first call that gets through spends the bucket; within the second, the next is refused.
    let refused = wait_for_some(WAIT, "the greeter's limiter to refuse a call", || {
        let answer = gateway.post("/greeter/say/hello", "{}");
        async move { (answer.status == 429).then_some(answer) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(refused.detail().contains("is over its rate limit"), "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("1"), "the service's retry-after is passed on");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_passes_unary_and_streaming_grpc_calls_to_registered_nodes() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    let proxy = Gateway::start_as("proxy", &url, &[]).await;
    let greeter = Greeter::start(&url, &[]).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.address))
        .expect("the proxy's URL")
        .connect_lazy();
    let mut client = SayClient::new(channel.clone());

    // Unary, once the proxy has seen the greeter register.
    let hello = || {
        let mut client = client.clone();
        async move { client.hello(greeter::Request { name: "Ada".into() }).await }
    };
    let answer = wait_for_some(WAIT, "the proxy to reach the greeter", || async {
        hello().await.ok().map(tonic::Response::into_inner)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; proxy: {}", proxy.process.stderr()));
    assert_eq!(answer.msg, format!("Hello Ada from {}", greeter.node_id));
    let refused = client.hello(greeter::Request { name: "error".into() }).await.expect_err("the service's own error");
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::InvalidArgument, "the name \"error\" is not greeted")
    );

    // Bidirectional streaming: each name is answered as it is sent.
    let (names, queue) = tokio::sync::mpsc::channel(4);
    let mut answers =
        client.stream(tokio_stream::wrappers::ReceiverStream::new(queue)).await.expect("stream").into_inner();
    for name in ["Ada", "Grace", "Edsger"] {
        names.send(greeter::Request { name: name.into() }).await.expect("send a name");
        let answer = answers.message().await.expect("an answer").expect("not the end");
        assert_eq!(answer.msg, format!("Hello {name} from {}", greeter.node_id));
    }
    drop(names);
    assert!(answers.message().await.expect("a clean end").is_none());

    // A method of a service nobody registered: UNIMPLEMENTED, as a gRPC server answers.
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let codec = tonic_prost::ProstCodec::<greeter::Request, greeter::Response>::default();
    let path = http::uri::PathAndQuery::from_static("/nosuch.Say/Hello");
    let unknown = grpc.unary(tonic::Request::new(greeter::Request::default()), path, codec).await.expect_err("unknown");
    assert_eq!(unknown.code(), tonic::Code::Unimplemented, "{unknown:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keelctl_explains_routes_and_edits_the_limits() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    let registry = GrpcRegistry::connect(std::slice::from_ref(&url)).await.expect("registry");
    let mut endpoint = Endpoint { name: "Say.Hello".into(), ..Default::default() };
    endpoint.metadata.insert("path".into(), "/hi,^/greet/[a-z]+$".into());
    endpoint.metadata.insert("method".into(), "POST".into());
    let service = Service {
        endpoints: vec![endpoint],
        ..Service::with_node("greeter", "1.0.0", Node::new("greeter-1", "127.0.0.1:9"))
    };
    registry.register(&service, RegisterOptions::with_ttl(Duration::from_secs(60))).await.expect("register");

    let routes = keelctl(&cluster, &["gateway", "routes"]);
    assert_eq!(routes.stdout.trim(), "greeter Say.Hello <- POST /hi, ^/greet/[a-z]+$ (rpc)", "{routes:?}");
    let resolved = keelctl(&cluster, &["gateway", "routes", "/greet/ada", "/v1/foo/bar", "/a/../b"]);
    let lines: Vec<&str> = resolved.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{resolved:?}");
    assert!(
        lines[0].starts_with("/greet/ada -> service greeter endpoint Say.Hello (Rpc; the endpoint's registered path"),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with("1 node(s))"), "{}", lines[0]);
    assert!(
        lines[1].starts_with("/v1/foo/bar -> service v1.foo endpoint Foo.Bar (Rpc; micro's default rule"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("/a/../b -> refused (400)"), "{}", lines[2]);

    let set = keelctl(
        &cluster,
        &["limits", "set", "--service", "greeter", "--endpoint", "Say.Hello", "--per-second", "1", "--burst", "2"],
    );
    assert_eq!(set.exited, Some(true), "{set:?}");
    let set = keelctl(&cluster, &["limits", "set", "--caller", "--per-second", "5"]);
    assert_eq!(set.exited, Some(true), "{set:?}");
    let got = keelctl(&cluster, &["-o", "json", "limits", "get"]);
    let expected = serde_json::json!({
        "caller": { "per_second": 5 },
        "endpoints": [{ "service": "greeter", "endpoint": "Say.Hello", "per_second": 1, "burst": 2 }],
    });
    assert_eq!(serde_json::from_str::<serde_json::Value>(got.stdout.trim()).expect("JSON"), expected, "{got:?}");
    let deleted = keelctl(&cluster, &["limits", "delete", "--caller"]);
    assert_eq!(deleted.exited, Some(true), "{deleted:?}");
    let got = keelctl(&cluster, &["-o", "json", "limits", "get"]);
    assert!(!got.stdout.contains("caller"), "{got:?}");
    let missing = keelctl(&cluster, &["limits", "delete", "--service", "billing"]);
    assert_eq!(missing.exited, Some(false));
    assert!(missing.stderr.contains("no limit on billing *"), "{missing:?}");
    let bad = keelctl(&cluster, &["limits", "set", "--caller", "--per-second", "0"]);
    assert_eq!(bad.exited, Some(false), "a zero rate is refused before anything is written: {bad:?}");
}

fn greet_rule(id: &str, scope: &str) -> Rule {
    let resource = Resource { r#type: "service".into(), name: "greeter".into(), endpoint: "Say.Hello".into() };
    Rule { id: id.into(), scope: scope.into(), resource, access: Access::Granted, priority: 0 }
}

/// Which greeters answered `requests` requests.
fn answering_nodes(gateway: &Gateway, requests: usize) -> BTreeSet<String> {
    (0..requests)
        .map(|_| {
            let answer = gateway.post("/greeter/say/hello", r#"{"name":"Ada"}"#);
            assert_eq!(answer.status, 200, "{}", answer.body);
            answer.json()["msg"].as_str().and_then(|msg| msg.rsplit(' ').next()).unwrap_or_default().to_string()
        })
        .collect()
}
