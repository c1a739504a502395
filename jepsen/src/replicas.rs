//! After the cluster heals: do the replicas hold the same state? Every member's HashKV at one
//! revision (the highest any member reports, which every member reaches once it has caught
//! up). Two different hashes at the same revision are a divergence, whatever the clients saw.

use std::fmt;
use std::time::Duration;

use etcd_client::Client;
use serde::Serialize;
use tokio::time::Instant;

use crate::tls::Endpoints;
use crate::verdict::Validity;

/// How long a member may take to reach the revision compared at.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// One member's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaHash {
    pub member: String,
    pub hash: Option<u32>,
    /// Why there is no hash.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplicaCheck {
    pub validity: Validity,
    /// The revision every member hashed at (0: not compared).
    pub revision: i64,
    pub hashes: Vec<ReplicaHash>,
    /// Why the comparison could not decide.
    pub unknown: Option<String>,
}

impl ReplicaCheck {
    pub fn skipped(reason: &str) -> ReplicaCheck {
        ReplicaCheck { validity: Validity::Unknown, revision: 0, hashes: Vec::new(), unknown: Some(reason.to_string()) }
    }

    /// Invalid when two members hashed differently, unknown when one could not answer.
    pub fn judge(revision: i64, hashes: Vec<ReplicaHash>) -> ReplicaCheck {
        let mut answered = hashes.iter().filter_map(|member| member.hash);
        let first = answered.next();
        let validity = if answered.any(|hash| Some(hash) != first) {
            Validity::Invalid
        } else if hashes.iter().any(|member| member.hash.is_none()) {
            Validity::Unknown
        } else {
            Validity::Valid
        };
        let unknown = (validity == Validity::Unknown).then(|| "a member did not answer HashKV".to_string());
        ReplicaCheck { validity, revision, hashes, unknown }
    }
}

impl fmt::Display for ReplicaCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.validity {
            Validity::Valid => "valid",
            Validity::Invalid => "INVALID (replicas-diverged)",
            Validity::Unknown => "unknown",
        };
        writeln!(f, "replicas: {verdict}")?;
        if let Some(reason) = &self.unknown {
            writeln!(f, "  unknown: {reason}")?;
        }
        for member in &self.hashes {
            match (member.hash, &member.error) {
                (Some(hash), _) => writeln!(f, "  {} HashKV at revision {}: {hash}", member.member, self.revision)?,
                (None, error) => writeln!(f, "  {}: no hash: {}", member.member, error.as_deref().unwrap_or("?"))?,
            }
        }
        Ok(())
    }
}

/// Compares the members at `client_urls` (named `n0`, `n1`, ... in order).
pub async fn compare(client_urls: &Endpoints) -> ReplicaCheck {
    let mut clients = Vec::with_capacity(client_urls.len());
    for url in client_urls.iter() {
        let options = client_urls.etcd_options(etcd_client::ConnectOptions::new());
        clients.push(Client::connect([url.as_str()], Some(options)).await.map_err(|e| e.to_string()));
    }
    let mut revision = 0;
    for client in clients.iter_mut().flatten() {
        if let Ok(answer) = client.hash_kv(0).await {
            revision = revision.max(answer.header().map_or(0, |header| header.revision()));
        }
    }
    if revision == 0 {
        return ReplicaCheck::skipped("no member answered HashKV");
    }
    let mut hashes = Vec::with_capacity(clients.len());
    for (index, client) in clients.into_iter().enumerate() {
        let member = format!("n{index}");
        let answer = match client {
            Ok(mut client) => hash_at(&mut client, revision).await,
            Err(error) => Err(format!("cannot connect: {error}")),
        };
        hashes.push(match answer {
            Ok(hash) => ReplicaHash { member, hash: Some(hash), error: None },
            Err(error) => ReplicaHash { member, hash: None, error: Some(error) },
        });
    }
    ReplicaCheck::judge(revision, hashes)
}

/// HashKV at `revision`, once the member has applied that far.
async fn hash_at(client: &mut Client, revision: i64) -> Result<u32, String> {
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        match client.hash_kv(revision).await {
            Ok(answer) => return Ok(answer.hash()),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("no HashKV at revision {revision} within {CATCH_UP_TIMEOUT:?}: {error}"))
            }
            Err(_) => tokio::time::sleep(RETRY_INTERVAL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, hash: Option<u32>) -> ReplicaHash {
        ReplicaHash { member: name.to_string(), hash, error: hash.is_none().then(|| "down".to_string()) }
    }

    #[test]
    fn one_hash_is_valid_two_are_a_divergence_a_missing_one_is_unknown() {
        let same = ReplicaCheck::judge(7, vec![member("n0", Some(1)), member("n1", Some(1)), member("n2", Some(1))]);
        assert_eq!(same.validity, Validity::Valid);
        let diverged = ReplicaCheck::judge(7, vec![member("n0", Some(1)), member("n1", Some(2)), member("n2", None)]);
        assert_eq!(diverged.validity, Validity::Invalid);
        assert!(diverged.to_string().contains("replicas-diverged"), "{diverged}");
        let missing = ReplicaCheck::judge(7, vec![member("n0", Some(1)), member("n1", None)]);
        assert_eq!(missing.validity, Validity::Unknown);
    }
}
