//! The details of the Watch API (compacted starts, prev_kv, filters, cancel, progress
//! requests and notifications, fragments) are etcd's: the same scenarios run on etcd 3.4 and
//! Keel, and their responses are compared.

use etcd_client::{Client, DeleteOptions, WatchFilterType, WatchOptions, WatchResponse, WatchStream};
use keel_tests::{Server, TestCluster, READY_TIMEOUT};

/// etcd splits a watch response into fragments (when the watch asked for them) once it is
/// bigger than `--max-request-bytes` (1.5 MiB by default) plus 512 KiB of gRPC overhead.
const WATCH_FRAGMENT_BYTES: usize = 1_572_864 + 524_288;

#[tokio::test(flavor = "multi_thread")]
async fn watch_api_details_match_etcd() {
    // Progress notifications every 500 ms instead of 10 minutes, so the test can see one.
    let flags = ["--experimental-watch-progress-notify-interval", "500ms"];
    let (keel, etcd) = tokio::join!(
        TestCluster::start_with(Server::Keel, 3, &flags),
        TestCluster::start_with(Server::Etcd, 3, &flags)
    );
    // etcd first: a scenario's own assertion failing there means the test is wrong.
    let etcd_observed = observe(&etcd).await;
    let keel_observed = observe(&keel).await;
    let mut mismatches = Vec::new();
    for ((name, k), (_, e)) in keel_observed.iter().zip(&etcd_observed) {
        if k != e {
            mismatches.push(format!("{name}\n  etcd: {e}\n  keel: {k}"));
        }
    }
    assert!(mismatches.is_empty(), "{}\n{}", mismatches.join("\n"), keel.all_logs());
}

/// What each scenario observed, as text with revisions relative to the scenario's start (the
/// two clusters need not agree on absolute revisions) and watch IDs relative to the first.
/// Each scenario also asserts what etcd 3.4 is known to do, so a wrong expectation shows on
/// etcd itself.
async fn observe(cluster: &TestCluster) -> Vec<(&'static str, String)> {
    let leader = cluster.leader().await;
    // Watches on a follower: Keel serves them from its own copy of the state.
    let mut client = cluster.member_client((leader + 1) % 3).await;
    let mut observed = Vec::new();
    // Each scenario is announced, so a failing assertion or timeout inside it says where it was.
    macro_rules! scenario {
        ($name:expr, $run:ident) => {{
            eprintln!("{:?}: {}", cluster.server, $name);
            observed.push(($name, $run(&mut client).await));
        }};
    }
    scenario!("a start revision below the compaction", compacted_start);
    scenario!("a start revision at the compaction", start_at_compaction);
    scenario!("prev_kv on put and delete", prev_kv);
    scenario!("the NOPUT and NODELETE filters", filters);
    scenario!("cancel", cancel);
    scenario!("a progress request", progress);
    scenario!("progress notifications", progress_notify);
    // Last: on a server that cannot take it, a 1 MB revision may leave the cluster unusable.
    scenario!("fragments of a big revision", fragments);
    observed
}

async fn revision(client: &mut Client) -> i64 {
    client.get("any", None).await.expect("get").header().expect("header").revision()
}

/// The next response of `stream`, within a deadline.
async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(READY_TIMEOUT, stream.message())
        .await
        .expect("a watch response in time")
        .expect("watch stream")
        .expect("watch stream open")
}

/// A response as text: flags, the compact revision and header revision relative to `base`
/// (0 stays 0), and its events.
fn describe(response: &WatchResponse, base: i64, first_watch_id: i64) -> String {
    let relative = |r: i64| if r == 0 { "0".to_string() } else { format!("base{:+}", r - base) };
    let header = response.header().map_or(0, |h| h.revision());
    let events: Vec<String> = response.events().iter().map(|e| describe_event(e, base)).collect();
    // -1: a progress response, for no watch in particular.
    let watch_id = if response.watch_id() == -1 { -1 } else { response.watch_id() - first_watch_id };
    format!(
        "{{watch {watch_id} created {} canceled {} compact {} reason {:?} header {} events {events:?}}}",
        response.created(),
        response.canceled(),
        relative(response.compact_revision()),
        response.cancel_reason(),
        relative(header),
    )
}

fn describe_event(event: &etcd_client::Event, base: i64) -> String {
    let kv = |kv: Option<&etcd_client::KeyValue>| {
        kv.map(|kv| {
            let relative = |r: i64| if r == 0 { "0".to_string() } else { format!("base{:+}", r - base) };
            format!(
                "{}={:?} create {} mod {} version {} lease {}",
                kv.key_str().unwrap_or_default(),
                kv.value_str().unwrap_or_default(),
                relative(kv.create_revision()),
                relative(kv.mod_revision()),
                kv.version(),
                kv.lease()
            )
        })
    };
    format!("{:?} {:?} prev {:?}", event.event_type(), kv(event.kv()), kv(event.prev_kv()))
}

async fn compacted_start(client: &mut Client) -> String {
    for value in ["1", "2", "3"] {
        client.put("cw", value, None).await.expect("put");
    }
    let compacted = revision(client).await;
    client.compact(compacted, None).await.expect("compact");
    let options = WatchOptions::new().with_start_revision(compacted - 1);
    let mut stream = client.watch("cw", Some(options)).await.expect("watch");
    let mut responses = Vec::new();
    let mut first_watch_id = None;
    // Until the cancellation: etcd 3.4 answers "created", then cancels with the compact revision.
    loop {
        let response = next(&mut stream).await;
        let watch_id = *first_watch_id.get_or_insert(response.watch_id());
        responses.push(describe(&response, compacted, watch_id));
        if response.canceled() {
            assert_eq!(response.compact_revision(), compacted, "{response:?}");
            break;
        }
        assert!(responses.len() < 3, "no cancellation: {responses:?}");
    }
    responses.join(" ")
}

async fn start_at_compaction(client: &mut Client) -> String {
    client.put("cr", "1", None).await.expect("put");
    client.put("cr", "2", None).await.expect("put");
    let compacted = revision(client).await;
    client.compact(compacted, None).await.expect("compact");
    // The compaction revision itself is still readable: the watch replays it.
    let options = WatchOptions::new().with_start_revision(compacted);
    let mut stream = client.watch("cr", Some(options)).await.expect("watch");
    let created = next(&mut stream).await;
    let watch_id = created.watch_id();
    let mut responses = vec![describe(&created, compacted, watch_id)];
    let mut events = 0;
    while events < 1 {
        let response = next(&mut stream).await;
        events += response.events().len();
        responses.push(describe(&response, compacted, watch_id));
    }
    responses.join(" ")
}

async fn prev_kv(client: &mut Client) -> String {
    let base = revision(client).await;
    let options = WatchOptions::new().with_start_revision(base + 1).with_prev_key();
    let mut stream = client.watch("pk", Some(options)).await.expect("watch");
    let created = next(&mut stream).await;
    let watch_id = created.watch_id();
    client.put("pk", "v1", None).await.expect("put");
    client.put("pk", "v2", None).await.expect("put");
    client.delete("pk", None).await.expect("delete");
    let mut events = Vec::new();
    while events.len() < 3 {
        let response = next(&mut stream).await;
        assert_eq!(response.watch_id(), watch_id);
        events.extend(response.events().iter().map(|e| describe_event(e, base)));
    }
    // The delete carries the value it removed.
    assert!(events[2].starts_with("Delete") && events[2].contains("prev Some(\"pk=\\\"v2\\\""), "{events:?}");
    events.join(" ")
}

async fn filters(client: &mut Client) -> String {
    let base = revision(client).await;
    let from = WatchOptions::new().with_start_revision(base + 1);
    let mut no_put =
        client.watch("nf", Some(from.clone().with_filters([WatchFilterType::NoPut]))).await.expect("watch");
    let mut no_delete = client.watch("nf", Some(from.with_filters([WatchFilterType::NoDelete]))).await.expect("watch");
    next(&mut no_put).await;
    next(&mut no_delete).await;
    client.put("nf", "1", None).await.expect("put");
    client.delete("nf", None).await.expect("delete");
    client.put("nf", "2", None).await.expect("put");
    client.delete("nf", None).await.expect("delete");
    let mut observed = Vec::new();
    for (name, stream) in [("NOPUT", &mut no_put), ("NODELETE", &mut no_delete)] {
        let mut events = Vec::new();
        while events.len() < 2 {
            let response = next(stream).await;
            events.extend(response.events().iter().map(|e| describe_event(e, base)));
        }
        observed.push(format!("{name}: {events:?}"));
    }
    assert!(observed[0].matches("Delete").count() == 2 && !observed[0].contains("Put "), "{observed:?}");
    observed.join(" ")
}

async fn cancel(client: &mut Client) -> String {
    let base = revision(client).await;
    let mut stream = client.watch("cancelled", None).await.expect("watch");
    let created = next(&mut stream).await;
    let first = created.watch_id();
    stream.cancel(first).await.expect("cancel");
    let canceled = next(&mut stream).await;
    assert!(canceled.canceled() && canceled.watch_id() == first, "{canceled:?}");
    // A second watch on the same stream sees the next put; the canceled one sees nothing
    // (its event would come first: one stream delivers in revision order).
    stream.watch("cancelled", None).await.expect("second watch");
    let second = next(&mut stream).await;
    client.put("cancelled", "1", None).await.expect("put");
    let event = next(&mut stream).await;
    assert_eq!(event.watch_id(), second.watch_id(), "an event for the canceled watch: {event:?}");
    [created, canceled, second, event].iter().map(|r| describe(r, base, first)).collect::<Vec<_>>().join(" ")
}

async fn progress(client: &mut Client) -> String {
    let mut stream = client.watch("progress", None).await.expect("watch");
    let created = next(&mut stream).await;
    client.put("progress", "1", None).await.expect("put");
    let event = next(&mut stream).await;
    client.put("elsewhere", "1", None).await.expect("put");
    let base = revision(client).await;
    stream.request_progress().await.expect("progress request");
    // No events, and the header says how far the watch stream has got: the current revision.
    let progress = next(&mut stream).await;
    assert!(progress.events().is_empty() && progress.header().map(|h| h.revision()) == Some(base), "{progress:?}");
    let first = created.watch_id();
    format!("{} {}", describe(&event, base, first), describe(&progress, base, first))
}

async fn fragments(client: &mut Client) -> String {
    // Three values of 1 MB, deleted at one revision: with prev_kv the revision's events are
    // 3 MB, over the limit; two fit in it.
    let value_bytes = 1_000_000;
    const { assert!(2 * 1_000_000 < WATCH_FRAGMENT_BYTES && 3 * 1_000_000 > WATCH_FRAGMENT_BYTES) };
    for i in 0..3 {
        // A failure here is an observation (etcd takes 1 MB values), not a broken test.
        if let Err(error) = client.put(format!("frag/{i}"), vec![b'x'; value_bytes], None).await {
            return format!("put of a 1 MB value failed: {error}");
        }
    }
    let base = revision(client).await;
    let from = WatchOptions::new().with_prefix().with_prev_key().with_start_revision(base + 1);
    let mut fragmented = client.watch("frag/", Some(from.clone().with_fragment())).await.expect("watch");
    let mut whole = client.watch("frag/", Some(from)).await.expect("watch");
    next(&mut fragmented).await;
    next(&mut whole).await;
    client.delete("frag/", Some(DeleteOptions::new().with_prefix())).await.expect("delete");
    let mut observed = Vec::new();
    for (name, stream) in [("fragment", &mut fragmented), ("whole", &mut whole)] {
        let mut per_response = Vec::new();
        while per_response.iter().sum::<usize>() < 3 {
            let response = next(stream).await;
            assert!(response.events().iter().all(|e| e.kv().is_some_and(|kv| kv.mod_revision() == base + 1)));
            per_response.push(response.events().len());
        }
        observed.push(format!("{name}: events per response {per_response:?}"));
    }
    assert_eq!(observed, ["fragment: events per response [2, 1]", "whole: events per response [3]"]);
    observed.join(" ")
}

async fn progress_notify(client: &mut Client) -> String {
    let options = WatchOptions::new().with_progress_notify();
    let mut stream = client.watch("notified", Some(options)).await.expect("watch");
    let created = next(&mut stream).await;
    client.put("elsewhere", "2", None).await.expect("put");
    let base = revision(client).await;
    // Idle (no event for it): within an interval or two, a notification of the current revision.
    let notified = next(&mut stream).await;
    assert!(notified.events().is_empty() && notified.header().map(|h| h.revision()) == Some(base), "{notified:?}");
    client.put("notified", "1", None).await.expect("put");
    let event = next(&mut stream).await;
    let first = created.watch_id();
    [notified, event].iter().map(|r| describe(r, base, first)).collect::<Vec<_>>().join(" ")
}
