//! The TLS flags, checked against the URLs' schemes as etcd checks them. The files themselves
//! are read when the member starts (`crate::tls`), so a missing one names its path there.

use super::Flags;
use crate::tls::TlsFiles;

/// The client port's TLS: `Some` when `--listen-client-urls` are https://.
pub(super) fn client_tls(flags: &Flags) -> Result<Option<TlsFiles>, String> {
    let https = all_https("--listen-client-urls", &flags.listen_client_urls)?;
    let files = Names { cert: "--cert-file", key: "--key-file", ca: "--trusted-ca-file", auth: "--client-cert-auth" };
    let given = Given {
        cert: flags.cert_file.as_ref(),
        key: flags.key_file.as_ref(),
        ca: flags.trusted_ca_file.as_ref(),
        auth: flags.client_cert_auth,
    };
    match https {
        Some(url) => files.require(&given, "client", &url).map(Some),
        None => {
            files.ignored(&given, &flags.listen_client_urls);
            Ok(None)
        }
    }
}

/// The peer TLS files, and whether the peer port itself is https://. The files are needed
/// when this member listens on https:// or any initial member's peer URL is https:// (this
/// member connects to it, verifies it with the peer CA and presents its own certificate).
pub(super) fn peer_tls(
    flags: &Flags,
    initial_cluster: &[(String, Vec<String>)],
) -> Result<(Option<TlsFiles>, bool), String> {
    let listen_https = all_https("--listen-peer-urls", &flags.listen_peer_urls)?;
    let connects_https = initial_cluster.iter().flat_map(|(_, urls)| urls).find(|url| url.starts_with("https://"));
    let files = Names {
        cert: "--peer-cert-file",
        key: "--peer-key-file",
        ca: "--peer-trusted-ca-file",
        auth: "--peer-client-cert-auth",
    };
    let given = Given {
        cert: flags.peer_cert_file.as_ref(),
        key: flags.peer_key_file.as_ref(),
        ca: flags.peer_trusted_ca_file.as_ref(),
        auth: flags.peer_client_cert_auth,
    };
    let Some(url) = listen_https.clone().or_else(|| connects_https.cloned()) else {
        files.ignored(&given, &flags.listen_peer_urls);
        return Ok((None, false));
    };
    let tls = files.require(&given, "peer", &url)?;
    if let (Some(https_peer), None) = (connects_https, &tls.trusted_ca) {
        return Err(format!(
            "--peer-trusted-ca-file must be provided to verify the other members' certificates (peer url {https_peer} \
             has the HTTPS scheme)"
        ));
    }
    Ok((Some(tls), listen_https.is_some()))
}

/// The first URL of `list` when every one is https://, `None` when none is; a mix is refused.
fn all_https(flag: &str, list: &str) -> Result<Option<String>, String> {
    let urls: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let https: Vec<&&str> = urls.iter().filter(|url| url.starts_with("https://")).collect();
    match https.first() {
        None => Ok(None),
        Some(first) if https.len() == urls.len() => Ok(Some(first.to_string())),
        Some(_) => {
            Err(format!("{flag}: mixing http:// and https:// URLs on one port kind is not supported, got {list:?}"))
        }
    }
}

/// The flag names of one port's TLS files.
struct Names {
    cert: &'static str,
    key: &'static str,
    ca: &'static str,
    auth: &'static str,
}

struct Given<'a> {
    cert: Option<&'a std::path::PathBuf>,
    key: Option<&'a std::path::PathBuf>,
    ca: Option<&'a std::path::PathBuf>,
    auth: bool,
}

impl Names {
    /// The files for an https:// port, with etcd's message when the pair is missing.
    fn require(&self, given: &Given<'_>, kind: &str, url: &str) -> Result<TlsFiles, String> {
        let (Some(cert), Some(key)) = (given.cert, given.key) else {
            return Err(format!(
                "TLS key/cert ({}, {}) must be provided for {kind} url {url} with HTTPS scheme",
                self.cert, self.key
            ));
        };
        if given.auth && given.ca.is_none() {
            return Err(format!("{} needs {}: the CA that signs the certificates it accepts", self.auth, self.ca));
        }
        Ok(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            trusted_ca: given.ca.cloned(),
            client_cert_auth: given.auth,
        })
    }

    /// etcd's warning for TLS files given to a port served as plain HTTP.
    fn ignored(&self, given: &Given<'_>, urls: &str) {
        if given.cert.is_some() || given.key.is_some() || given.auth {
            tracing::warn!(
                "scheme is HTTP while key and cert files are present ({}, {}); ignoring key and cert files for {urls}",
                self.cert,
                self.key
            );
        }
    }
}
