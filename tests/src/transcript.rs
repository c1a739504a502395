//! etcdctl transcripts: one script of etcdctl runs against a Keel cluster and an etcd 3.4
//! cluster, whose outputs must match once what legitimately differs between two correct
//! clusters (member and cluster IDs, ports, timings, terms) is normalised.

use crate::{etcdctl_with_input, EtcdctlOutput, TestCluster};

/// One etcdctl invocation of a script: arguments and stdin.
pub struct Step {
    pub args: &'static [&'static str],
    pub stdin: &'static str,
}

pub const fn step(args: &'static [&'static str]) -> Step {
    Step { args, stdin: "" }
}

/// Runs `script` on both clusters, one step at a time on each, and fails listing every step
/// whose normalised output differs. Returns Keel's outputs, so a test can also check that the
/// two agree on what it expects (and not on failing alike, e.g. on a TLS misconfiguration).
pub fn assert_same_transcripts(keel: &TestCluster, etcd: &TestCluster, script: &[Step]) -> Vec<EtcdctlOutput> {
    let keel_outputs = tokio::task::block_in_place(|| run_script(keel, script));
    let etcd_outputs = tokio::task::block_in_place(|| run_script(etcd, script));
    let mut mismatches = Vec::new();
    for ((step, k), e) in script.iter().zip(&keel_outputs).zip(&etcd_outputs) {
        if k != e {
            mismatches.push(format!("etcdctl {:?} (stdin {:?})\n  etcd: {e:?}\n  keel: {k:?}", step.args, step.stdin));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} steps differ:\n{}\n{}",
        mismatches.len(),
        script.len(),
        mismatches.join("\n"),
        keel.all_logs()
    );
    keel_outputs
}

fn run_script(cluster: &TestCluster, script: &[Step]) -> Vec<EtcdctlOutput> {
    let endpoints = cluster.endpoints_csv();
    script
        .iter()
        .map(|step| {
            let args = expand_certificates(cluster, step.args);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            normalise(cluster, &etcdctl_with_input(&endpoints, &args, step.stdin))
        })
        .collect()
}

/// A step's `@cert=NAME` argument becomes etcdctl's `--cacert`, `--cert` and `--key` for a
/// client certificate with CN `NAME` from the cluster's CA (made on first use); `@ca` becomes
/// `--cacert` alone.
fn expand_certificates(cluster: &TestCluster, args: &[&str]) -> Vec<String> {
    let mut expanded = Vec::new();
    for arg in args {
        let tls = || cluster.tls.as_ref().expect("a step names a certificate: the cluster must use TLS");
        if let Some(name) = arg.strip_prefix("@cert=") {
            let tls = tls();
            let stem = format!("client-{name}");
            let files = tls.certs.existing(&stem).unwrap_or_else(|| tls.certs.issue(&stem, name));
            expanded.extend(tls.etcdctl_args(&files));
        } else if *arg == "@ca" {
            expanded.push(format!("--cacert={}", tls().certs.ca.display()));
        } else {
            expanded.push(arg.to_string());
        }
    }
    expanded
}

/// Replaces what differs between two correct clusters: endpoint URLs (by member index),
/// IDs (long hex or decimal numbers in known JSON fields) and timings.
pub fn normalise(cluster: &TestCluster, output: &EtcdctlOutput) -> EtcdctlOutput {
    let clean = |text: &str| -> String {
        let mut text = text.to_string();
        for (i, member) in cluster.members.iter().enumerate() {
            text = text.replace(&member.client_url, &format!("CLIENT{i}"));
            text = text.replace(&member.peer_url, &format!("PEER{i}"));
        }
        if let Ok(mut json) = serde_json::from_str::<serde_json::Value>(&text) {
            scrub_json(&mut json);
            return json.to_string();
        }
        // `-w fields` prints the term as a line of its own; elections legitimately differ.
        let text: String = text
            .lines()
            .map(|line| {
                if line.starts_with("\"RaftTerm\" : ") {
                    "\"RaftTerm\" : TERM\n".to_string()
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        text.split_inclusive(|c: char| c.is_whitespace() || c == ',')
            .map(|word| {
                let bare = word.trim_end_matches(|c: char| c.is_whitespace() || c == ',');
                if bare.len() >= 10 && bare.chars().all(|c| c.is_ascii_hexdigit()) {
                    word.replacen(bare, "ID", 1)
                } else {
                    word.to_string()
                }
            })
            .collect()
    };
    // etcdctl's own retry log lines carry timestamps and random client IDs; the error it
    // prints for the user is the line that must match.
    let stderr: String =
        output.stderr.lines().filter(|l| !l.starts_with("{\"level\"")).map(|l| format!("{l}\n")).collect();
    EtcdctlOutput { success: output.success, stdout: clean(&output.stdout), stderr: clean(&stderr) }
}

fn scrub_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if ["cluster_id", "member_id", "raft_term", "ID"].contains(&key.as_str()) {
                    *field = serde_json::Value::from(0);
                } else {
                    scrub_json(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub_json),
        _ => {}
    }
}
