//! etcdctl 3.4's `lease` and `watch` commands print against Keel what they print against etcd
//! 3.4. The same script runs on a fresh 3-member cluster of each; only what legitimately
//! differs is normalised: member and cluster IDs, terms, server-chosen lease IDs, and the
//! remaining seconds of a lease (a timing), and those only when they are plausible.

use std::time::Duration;

use etcd_client::{Client, DeleteOptions, PutOptions};
use keel_tests::{etcdctl_command, etcdctl_with_input, Background, BackgroundOutput, Server, TestCluster};

/// A lease ID no server granted (etcdctl reads lease IDs as hex): the "not found" paths.
const UNKNOWN_LEASE: &str = "1234";

/// The lease script. `{lease}` is the ID of the lease granted last, as etcdctl printed it.
/// At most one lease is alive at a time: etcd lists leases (and a lease's keys) in Go map
/// order, so with two the order would be random.
const LEASE_SCRIPT: &[&[&str]] = &[
    &["lease", "grant", "10"],
    &["put", "--lease={lease}", "k1", "v1"],
    &["put", "--lease={lease}", "k2", "v2"],
    &["put", "plain", "v"],
    &["get", "k1", "-w", "json"],
    &["lease", "timetolive", "{lease}"],
    &["lease", "timetolive", "--keys", "{lease}"],
    &["lease", "timetolive", "--keys", "{lease}", "-w", "json"],
    &["lease", "list"],
    &["lease", "list", "-w", "json"],
    &["lease", "keep-alive", "--once", "{lease}"],
    &["lease", "keep-alive", "--once", "{lease}", "-w", "json"],
    // A put without --lease detaches the key; --ignore-lease keeps the key's lease.
    &["put", "--lease={lease}", "plain", "v"],
    &["put", "k1", "v1-detached"],
    &["put", "--ignore-lease", "k2", "v2-kept"],
    &["put", "--ignore-lease", "no-such-key", "x"],
    &["get", "k2", "-w", "json"],
    &["lease", "timetolive", "--keys", "{lease}"],
    // Leases nobody granted.
    &["lease", "timetolive", UNKNOWN_LEASE],
    &["lease", "timetolive", "--keys", UNKNOWN_LEASE, "-w", "json"],
    &["lease", "keep-alive", "--once", UNKNOWN_LEASE],
    &["lease", "revoke", UNKNOWN_LEASE],
    &["put", "--lease=1234", "k3", "v3"],
    &["lease", "grant", "9000000001"],
    // Revoke deletes the attached keys (one revision) and nothing else.
    &["lease", "revoke", "{lease}"],
    &["get", "", "--from-key"],
    &["get", "k1", "-w", "json"],
    &["lease", "timetolive", "{lease}"],
    &["lease", "timetolive", "{lease}", "-w", "json"],
    &["lease", "keep-alive", "--once", "{lease}"],
    &["lease", "revoke", "{lease}"],
    // A TTL below the minimum is raised to it: 1.5 election timeouts, rounded up (1 s with
    // the tests' 500 ms election timeout, 2 s with etcd's default 1 s).
    &["lease", "grant", "1"],
    &["lease", "revoke", "{lease}"],
    &["lease", "list"],
];

/// How long one watch case may take before its output is taken as it is.
const WATCH_CASE_TIMEOUT: Duration = Duration::from_secs(15);

/// The value of the last write of every watch case: the watcher's output is complete once it
/// printed it.
const END: &str = "END";

/// The value of the writes that only prove a live watch (one without `--rev`) is in place.
const SENTINEL: &str = "sentinel";

#[tokio::test(flavor = "multi_thread")]
async fn lease_and_watch_commands_print_the_same_as_against_etcd() {
    let (keel, etcd) = tokio::join!(TestCluster::start(Server::Keel, 3), TestCluster::start(Server::Etcd, 3));
    let mut mismatches = Vec::new();

    // Phase 1: the lease script, one etcdctl run per step.
    let keel_leases = tokio::task::block_in_place(|| run_lease_script(&keel));
    let etcd_leases = tokio::task::block_in_place(|| run_lease_script(&etcd));
    for ((step, k), e) in LEASE_SCRIPT.iter().zip(&keel_leases).zip(&etcd_leases) {
        if k != e {
            mismatches.push(format!("etcdctl {step:?}\n  etcd: {e:?}\n  keel: {k:?}"));
        }
    }

    // Phase 2: the watch cases, each an `etcdctl watch` child while a client writes.
    let keel_watches = watch_cases(&keel).await;
    let etcd_watches = watch_cases(&etcd).await;

    // Phase 3: `etcdctl lease keep-alive` running until its lease is revoked.
    let keel_keep_alives = keep_alive_cases(&keel).await;
    let etcd_keep_alives = keep_alive_cases(&etcd).await;
    let cases = keel_watches.iter().chain(&keel_keep_alives).zip(etcd_watches.iter().chain(&etcd_keep_alives));
    for ((name, k), (_, e)) in cases {
        if k != e {
            mismatches.push(format!("{name}\n  etcd: {e:?}\n  keel: {k:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} steps differ:\n{}\n{}",
        mismatches.len(),
        LEASE_SCRIPT.len() + keel_watches.len() + keel_keep_alives.len(),
        mismatches.join("\n"),
        keel.all_logs()
    );
}

/// Runs the lease script; returns each step's output, normalised.
fn run_lease_script(cluster: &TestCluster) -> Vec<BackgroundOutput> {
    let endpoints = cluster.endpoints_csv();
    let mut leases = Leases::default();
    let mut outputs = Vec::new();
    for step in LEASE_SCRIPT {
        let current = leases.granted.last().cloned().unwrap_or_default();
        let args: Vec<String> = step.iter().map(|arg| arg.replace("{lease}", &current)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = etcdctl_with_input(&endpoints, &args, "");
        if step.starts_with(&["lease", "grant"]) && output.success {
            // "lease 694d77aa9e38260f granted with TTL(10s)"
            let id = output.stdout.split_whitespace().nth(1).expect("lease id").to_string();
            leases.granted.push(id);
        }
        outputs.push(BackgroundOutput { exited: Some(output.success), stdout: output.stdout, stderr: output.stderr });
    }
    outputs.iter().map(|output| leases.normalise(cluster, output)).collect()
}

/// The leases granted so far, as etcdctl printed their IDs: normalised to LEASE0, LEASE1, ...
#[derive(Default)]
struct Leases {
    granted: Vec<String>,
}

impl Leases {
    fn normalise(&self, cluster: &TestCluster, output: &BackgroundOutput) -> BackgroundOutput {
        // etcdctl's own retry log lines carry timestamps and random client IDs; the error it
        // prints for the user is the line that must match.
        let stderr: String =
            output.stderr.lines().filter(|l| !l.starts_with("{\"level\"")).map(|l| format!("{l}\n")).collect();
        BackgroundOutput {
            exited: output.exited,
            stdout: self.normalise_text(cluster, &output.stdout),
            stderr: self.normalise_text(cluster, &stderr),
        }
    }

    fn normalise_text(&self, cluster: &TestCluster, text: &str) -> String {
        let mut text = text.to_string();
        for (i, member) in cluster.members.iter().enumerate() {
            text = text.replace(&member.client_url, &format!("CLIENT{i}"));
        }
        text.lines()
            .map(|line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(mut json) if json.is_object() => {
                    self.scrub_json(&mut json);
                    format!("{json}\n")
                }
                _ => format!("{}\n", self.normalise_line(line)),
            })
            .collect()
    }

    fn normalise_line(&self, line: &str) -> String {
        let mut line = line.to_string();
        for (i, id) in self.granted.iter().enumerate() {
            line = line.replace(id.as_str(), &format!("LEASE{i}"));
        }
        // "lease X granted with TTL(10s), remaining(9s)": any remaining time within the TTL.
        if let (Some(ttl), Some(remaining)) = (between(&line, "TTL(", "s)"), between(&line, "remaining(", "s)")) {
            if let (Ok(ttl), Ok(left)) = (ttl.parse::<i64>(), remaining.parse::<i64>()) {
                if left > 0 && left <= ttl {
                    line = line.replace(&format!("remaining({remaining}s)"), "remaining(Ns)");
                }
            }
        }
        // "attached keys([k2 plain])": etcd lists them in Go map order.
        if let Some(keys) = between(&line, "attached keys([", "])") {
            let mut sorted: Vec<&str> = keys.split(' ').collect();
            sorted.sort_unstable();
            line = line.replace(&format!("([{keys}])"), &format!("([{}])", sorted.join(" ")));
        }
        line
    }

    fn scrub_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        let granted_ttl = value.get("granted-ttl").and_then(Value::as_i64);
        match value {
            Value::Object(map) => {
                for (key, field) in map.iter_mut() {
                    match key.as_str() {
                        "cluster_id" | "member_id" | "raft_term" => *field = Value::from(0),
                        // LeaseTimeToLive's remaining seconds: any value within the TTL.
                        "ttl" => {
                            let left = field.as_i64().unwrap_or(0);
                            if left > 0 && granted_ttl.is_some_and(|ttl| left <= ttl) {
                                *field = Value::from("N");
                            }
                        }
                        "keys" => {
                            if let Value::Array(keys) = field {
                                keys.sort_by_key(Value::to_string);
                            }
                        }
                        _ => self.scrub_json(field),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.scrub_json(item)),
            Value::Number(number) => {
                let position = self
                    .granted
                    .iter()
                    .position(|id| u64::from_str_radix(id, 16).ok().is_some_and(|id| number.as_u64() == Some(id)));
                if let Some(i) = position {
                    *value = Value::from(format!("LEASE{i}"));
                }
            }
            _ => {}
        }
    }
}

/// The text between `start` and the next `end` in `line`.
fn between<'a>(line: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = line.find(start)? + start.len();
    let len = line[from..].find(end)?;
    Some(&line[from..from + len])
}

/// The watch cases, in order; each returns what `etcdctl watch` printed, normalised. The
/// cases with `--rev` come first: they write a fixed number of revisions, so the compaction
/// case compacts at the same revision on both clusters. The live cases (no `--rev`) write
/// as many sentinels as it takes to see the watch in place, and come last.
async fn watch_cases(cluster: &TestCluster) -> Vec<(String, BackgroundOutput)> {
    let endpoints = cluster.endpoints_csv();
    let mut client = cluster.client().await;
    let mut outputs = Vec::new();
    let mut case = |name: &str, output: BackgroundOutput| outputs.push((name.to_string(), normalise_watch(output)));

    // One key from the next revision: puts and a delete of it, not the key beside it.
    let rev = format!("--rev={}", revision(&mut client).await + 1);
    let watch = Background::spawn(etcdctl_command(&endpoints, &["watch", "wk", &rev]));
    put(&mut client, "wk", "v1").await;
    put(&mut client, "wk2", "other").await;
    delete(&mut client, "wk", None).await;
    put(&mut client, "wk", END).await;
    case("watch wk --rev=next", until_end(watch).await);

    // A prefix, and a range delete of it (two events at one revision).
    let rev = format!("--rev={}", revision(&mut client).await + 1);
    let watch = Background::spawn(etcdctl_command(&endpoints, &["watch", "p/", "--prefix", &rev]));
    put(&mut client, "p/a", "1").await;
    put(&mut client, "p/b", "2").await;
    put(&mut client, "q", "3").await;
    delete(&mut client, "p/", Some(DeleteOptions::new().with_prefix())).await;
    put(&mut client, "p/z", END).await;
    case("watch p/ --prefix --rev=next", until_end(watch).await);

    // A range [r/a, r/c).
    let rev = format!("--rev={}", revision(&mut client).await + 1);
    let watch = Background::spawn(etcdctl_command(&endpoints, &["watch", "r/a", "r/c", &rev]));
    for key in ["r/a", "r/b", "r/c", "r/0"] {
        put(&mut client, key, "1").await;
    }
    put(&mut client, "r/bb", END).await;
    case("watch r/a r/c --rev=next", until_end(watch).await);

    // --prev-kv: the value before each put and delete.
    let rev = format!("--rev={}", revision(&mut client).await + 1);
    let watch = Background::spawn(etcdctl_command(&endpoints, &["watch", "pk", "--prev-kv", &rev]));
    put(&mut client, "pk", "v1").await;
    put(&mut client, "pk", "v2").await;
    delete(&mut client, "pk", None).await;
    put(&mut client, "pk", END).await;
    case("watch pk --prev-kv --rev=next", until_end(watch).await);

    // History: every write happened before the watch started.
    let from = format!("--rev={}", revision(&mut client).await + 1);
    put(&mut client, "h/a", "1").await;
    put(&mut client, "h/b", "2").await;
    put(&mut client, "h/a", "3").await;
    delete(&mut client, "h/b", None).await;
    put(&mut client, "other", "x").await;
    let watch = Background::spawn(etcdctl_command(&endpoints, &["watch", "h/", "--prefix", &from]));
    put(&mut client, "h/z", END).await;
    case("watch h/ --prefix --rev=<history>", until_end(watch).await);

    // A txn's events: one revision, one response (checked with -w json). Both watchers are
    // shown to be live (the first put printed) before the txn, so the txn is not replayed
    // from history together with other revisions.
    let rev = format!("--rev={}", revision(&mut client).await + 1);
    let simple = Background::spawn(etcdctl_command(&endpoints, &["watch", "t/", "--prefix", &rev]));
    let json = Background::spawn(etcdctl_command(&endpoints, &["watch", "t/", "--prefix", &rev, "-w", "json"]));
    put(&mut client, "t/x", "old").await;
    for watch in [&simple, &json] {
        let printed = watch.wait_for_stdout(WATCH_CASE_TIMEOUT, "the first event", |out| out.contains('\n')).await;
        printed.unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    }
    let txn = "value(\"t/x\") = \"old\"\n\nput t/a 1\ndel t/x\nput t/b 2\n\nput t/failed 1\n\n";
    let txn_output = tokio::task::block_in_place(|| etcdctl_with_input(&endpoints, &["txn"], txn));
    case(
        "etcdctl txn (while watched)",
        BackgroundOutput { exited: Some(txn_output.success), stdout: txn_output.stdout, stderr: txn_output.stderr },
    );
    put(&mut client, "t/z", END).await;
    case("watch t/ --prefix (a txn)", until_end(simple).await);
    let json_lines = |out: &str| out.lines().filter(|l| l.starts_with('{')).count() >= 3;
    let printed = json.wait_for_stdout(WATCH_CASE_TIMEOUT, "three responses", json_lines).await;
    printed.unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    case("watch t/ --prefix -w json (a txn)", json.kill());

    // Revoking a lease deletes its keys: delete events, at one revision.
    let rev = format!("--rev={}", revision(&mut client).await + 1);
    let watch = Background::spawn(etcdctl_command(&endpoints, &["watch", "lw/", "--prefix", &rev]));
    let lease = client.lease_grant(60, None).await.expect("lease grant").id();
    for key in ["lw/a", "lw/b"] {
        client.put(key, "leased", Some(PutOptions::new().with_lease(lease))).await.expect("put with lease");
    }
    client.lease_revoke(lease).await.expect("lease revoke");
    put(&mut client, "lw/z", END).await;
    case("watch lw/ --prefix (a lease revoked)", until_end(watch).await);

    // A start revision below the compaction: etcdctl reports the cancellation and exits.
    put(&mut client, "c/a", "1").await;
    put(&mut client, "c/a", "2").await;
    let compacted = revision(&mut client).await;
    client.compact(compacted, None).await.expect("compact");
    let below = format!("--rev={}", compacted - 1);
    for format in ["simple", "json"] {
        let watch = Background::spawn(etcdctl_command(&endpoints, &["watch", "c/", "--prefix", &below, "-w", format]));
        case(
            &format!("watch c/ --prefix --rev=<compacted> -w {format}"),
            watch.finish_within(WATCH_CASE_TIMEOUT).await,
        );
    }

    // Live: no --rev. Sentinel puts until the watch prints one; then the writes under test.
    let watch = Background::spawn(etcdctl_command(&endpoints, &["watch", "lk"]));
    until_live(&mut client, &watch, "lk").await;
    put(&mut client, "lk", "v1").await;
    delete(&mut client, "lk", None).await;
    put(&mut client, "lk", END).await;
    case("watch lk (live)", without_sentinels(until_end(watch).await));

    let watch = Background::spawn(etcdctl_command(&endpoints, &["watch", "lp/", "--prefix"]));
    until_live(&mut client, &watch, "lp/s").await;
    put(&mut client, "lp/a", "1").await;
    put(&mut client, "lpx", "not watched").await;
    delete(&mut client, "lp/s", None).await;
    put(&mut client, "lp/a", END).await;
    case("watch lp/ --prefix (live)", without_sentinels(until_end(watch).await));

    if cluster.server == Server::Etcd {
        // A case that printed nothing on etcd too would match without testing anything.
        let silent: Vec<&String> = outputs
            .iter()
            .filter(|(name, output)| {
                name.starts_with("watch") && !name.contains("compacted") && output.stdout.is_empty()
            })
            .map(|(name, _)| name)
            .collect();
        assert!(silent.is_empty(), "etcd printed nothing for {silent:?}");
    }
    outputs
}

/// `etcdctl lease keep-alive` as a long-running child: it prints a line per keep-alive until
/// the lease is revoked, then says so and exits. How many keep-alives it prints is a timing,
/// so repeated lines are shown once.
async fn keep_alive_cases(cluster: &TestCluster) -> Vec<(String, BackgroundOutput)> {
    let endpoints = cluster.endpoints_csv();
    let mut client = cluster.client().await;
    let mut outputs = Vec::new();

    // Kept alive (every TTL/3 = 1 s), then revoked.
    let lease = client.lease_grant(3, None).await.expect("lease grant").id();
    let id = format!("{lease:016x}");
    let keeper = Background::spawn(etcdctl_command(&endpoints, &["lease", "keep-alive", &id]));
    let printed = keeper.wait_for_stdout(WATCH_CASE_TIMEOUT, "a keep-alive", |out| out.contains("keepalived")).await;
    printed.unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    client.lease_revoke(lease).await.expect("lease revoke");
    let output = keeper.finish_within(WATCH_CASE_TIMEOUT).await;
    outputs.push(("lease keep-alive, then revoked".to_string(), collapse_repeats(output, &id)));

    // A lease that does not exist.
    let keeper = Background::spawn(etcdctl_command(&endpoints, &["lease", "keep-alive", UNKNOWN_LEASE]));
    let output = keeper.finish_within(WATCH_CASE_TIMEOUT).await;
    outputs.push(("lease keep-alive of an unknown lease".to_string(), collapse_repeats(output, &id)));
    if cluster.server == Server::Etcd {
        // What etcd 3.4 prints, so a case that went wrong on both sides still fails.
        let expected = [
            "lease LEASE keepalived with TTL(3)\nlease LEASE expired or revoked.\n",
            "lease 0000000000001234 expired or revoked.\n",
        ];
        let printed: Vec<&str> = outputs.iter().map(|(_, output)| output.stdout.as_str()).collect();
        assert_eq!(printed, expected);
    }
    outputs
}

/// Replaces the lease ID with LEASE and shows each run of equal lines once.
fn collapse_repeats(output: BackgroundOutput, lease_id: &str) -> BackgroundOutput {
    let mut lines: Vec<String> = output.stdout.lines().map(|line| line.replace(lease_id, "LEASE")).collect();
    lines.dedup();
    let stdout = lines.iter().map(|line| format!("{line}\n")).collect();
    BackgroundOutput { stdout, ..output }
}

async fn revision(client: &mut Client) -> i64 {
    client.get("any", None).await.expect("get").header().expect("header").revision()
}

async fn put(client: &mut Client, key: &str, value: &str) {
    client.put(key, value, None).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
}

async fn delete(client: &mut Client, key: &str, options: Option<DeleteOptions>) {
    client.delete(key, options).await.unwrap_or_else(|e| panic!("delete {key}: {e}"));
}

/// Collects the watcher's output until it printed the value [`END`] (or the case timed out:
/// then the output is compared as it is), and stops it.
async fn until_end(watch: Background) -> BackgroundOutput {
    let _ = watch.wait_for_stdout(WATCH_CASE_TIMEOUT, "the END event", |out| out.lines().any(|l| l == END)).await;
    watch.kill()
}

/// Puts [`SENTINEL`] at `key` until the watcher prints an event. Each put is awaited and
/// then given a moment to show: a watch that is not in place yet misses it.
async fn until_live(client: &mut Client, watch: &Background, key: &str) {
    let deadline = std::time::Instant::now() + WATCH_CASE_TIMEOUT;
    while std::time::Instant::now() < deadline {
        put(client, key, SENTINEL).await;
        let shown = Duration::from_millis(300);
        if watch.wait_for_stdout(shown, "a sentinel event", |out| out.contains(SENTINEL)).await.is_ok() {
            return;
        }
    }
    panic!("the watch never printed a sentinel event: {:?} {:?}", watch.stdout(), watch.stderr());
}

/// Drops the leading sentinel events (however many arrived) from a live watch's output: an
/// event starts at a `PUT` or `DELETE` line and ends with the value line.
fn without_sentinels(output: BackgroundOutput) -> BackgroundOutput {
    let mut events: Vec<Vec<&str>> = Vec::new();
    for line in output.stdout.lines() {
        match events.last_mut() {
            Some(event) if line != "PUT" && line != "DELETE" => event.push(line),
            _ => events.push(vec![line]),
        }
    }
    let first_real = events.iter().position(|event| event.last() != Some(&SENTINEL)).unwrap_or(events.len());
    let stdout = events[first_real..].iter().flatten().map(|line| format!("{line}\n")).collect();
    BackgroundOutput { stdout, ..output }
}

/// Scrubs the member and cluster IDs and terms of `-w json` watch output.
fn normalise_watch(output: BackgroundOutput) -> BackgroundOutput {
    let stdout = output
        .stdout
        .lines()
        .map(|line| match serde_json::from_str::<serde_json::Value>(line) {
            Ok(mut json) => {
                if let Some(header) = json.get_mut("Header").and_then(serde_json::Value::as_object_mut) {
                    for id in ["cluster_id", "member_id", "raft_term"] {
                        if let Some(field) = header.get_mut(id) {
                            *field = serde_json::Value::from(0);
                        }
                    }
                }
                format!("{json}\n")
            }
            Err(_) => format!("{line}\n"),
        })
        .collect();
    BackgroundOutput { stdout, ..output }
}
