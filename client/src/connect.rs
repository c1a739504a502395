//! How a client reaches a cluster: plain HTTP/2 to `http://` endpoints, TLS to `https://`
//! ones with the CA that signed the members' certificates and, when the members ask for one
//! (`--trusted-ca-file` / `--client-cert-auth`), this client's own certificate: etcdctl's
//! `--cacert`, `--cert` and `--key`.

use std::fmt;
use std::io::Read;
use std::path::Path;

use std::sync::Arc;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::auth::layers::TokenSource;

use crate::error::{Error, Result};

/// The largest certificate, key or CA file read: a PEM file of a few chains is a few KiB.
pub const PEM_FILE_BYTES_MAX: u64 = 1 << 20;

/// The environment variable that names a cluster's client URLs, comma-separated.
pub const ENDPOINTS_ENV: &str = "KEEL_ENDPOINTS";
/// The cluster a service reaches when `KEEL_ENDPOINTS` is not set: one local member on etcd's port.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";

/// The endpoints `KEEL_ENDPOINTS` names (comma-separated, blanks ignored), else
/// [`DEFAULT_ENDPOINT`]: what a service passes to `Grpc*::connect`.
pub fn endpoints_from_env() -> Vec<String> {
    let value = std::env::var(ENDPOINTS_ENV).unwrap_or_default();
    let endpoints = split_endpoints(&value);
    if endpoints.is_empty() {
        return vec![DEFAULT_ENDPOINT.to_string()];
    }
    endpoints
}

fn split_endpoints(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|endpoint| !endpoint.is_empty()).map(String::from).collect()
}

/// Options every `Grpc*::connect_with` takes.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    tls: Option<Tls>,
    token: Option<Arc<TokenSource>>,
}

impl ConnectOptions {
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// TLS for `https://` endpoints (`http://` ones stay plain, as with etcdctl).
    pub fn with_tls(mut self, tls: Tls) -> ConnectOptions {
        self.tls = Some(tls);
        self
    }

    /// Every call carries this account's access token (`authorization: Bearer`), so a
    /// cluster with auth on lets it reach what its rules allow.
    pub fn with_token(mut self, source: Arc<TokenSource>) -> ConnectOptions {
        self.token = Some(source);
        self
    }

    pub(crate) fn token(&self) -> Option<Arc<TokenSource>> {
        self.token.clone()
    }

    pub(crate) fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The TLS options as tonic's (and so etcd-client's: `etcd_client::TlsOptions`), for a
    /// program that also speaks etcd's API to the cluster.
    pub fn tls_config(&self) -> Option<tonic::transport::ClientTlsConfig> {
        self.tls.as_ref().map(Tls::tonic)
    }
}

/// The CA to verify the members with, and the client certificate to present, as PEM.
#[derive(Clone)]
pub struct Tls {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    /// Trusts the members whose certificates `ca_pem` signed.
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Tls {
        Tls { ca: ca_pem.into(), identity: None }
    }

    /// Presents `cert_pem` (with its key) to members that ask for a client certificate. With
    /// `--client-cert-auth` and auth on, its CN is the user the cluster sees.
    pub fn with_identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Tls {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// From files, as etcdctl's `--cacert`, `--cert` and `--key` name them; a certificate
    /// needs its key and a key its certificate.
    pub fn from_files(ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<Tls> {
        let tls = Tls::new(read_pem(ca)?);
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(tls.with_identity(read_pem(cert)?, read_pem(key)?)),
            (None, None) => Ok(tls),
            _ => Err(Error::InvalidArgument(
                "a client certificate needs its key and a key its certificate (--cert and --key go together)".into(),
            )),
        }
    }

    pub(crate) fn tonic(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca));
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

/// Never prints the key.
impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca_bytes", &self.ca.len())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>> {
    let unreadable = |e: std::io::Error| Error::InvalidArgument(format!("cannot read {}: {e}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(PEM_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(Error::InvalidArgument(format!(
            "{}: larger than {PEM_FILE_BYTES_MAX} bytes, not a PEM file",
            path.display()
        )));
    }
    if !bytes.starts_with(b"-----BEGIN") && !String::from_utf8_lossy(&bytes).contains("-----BEGIN") {
        return Err(Error::InvalidArgument(format!("{}: not a PEM file (no -----BEGIN line)", path.display())));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_split_on_commas_and_blanks_dropped() {
        assert_eq!(split_endpoints(" http://a:1, ,http://b:2 ,"), vec!["http://a:1", "http://b:2"]);
        assert!(split_endpoints(" , ").is_empty());
    }

    #[test]
    fn files_are_checked_before_any_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.pem");
        let err = Tls::from_files(&missing, None, None).expect_err("missing CA");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, b"not pem").expect("write");
        let err = Tls::from_files(&garbage, None, None).expect_err("not PEM");
        assert!(err.to_string().contains("not a PEM file"), "{err}");
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").expect("write");
        let err = Tls::from_files(&pem, Some(&pem), None).expect_err("cert without key");
        assert!(err.to_string().contains("--cert and --key go together"), "{err}");
        let tls = Tls::from_files(&pem, Some(&pem), Some(&pem)).expect("PEM files");
        assert!(!format!("{tls:?}").contains("BEGIN"), "the key is never printed");
    }
}
