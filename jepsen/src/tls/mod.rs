//! TLS and auth for a run (`--tls`, `--cacert/--cert/--key`, `--auth`): the three PEM files
//! the members and the clients share, made in the run directory when asked (none committed),
//! and [`Endpoints`], the client URLs with what a client needs to reach them.
//!
//! One certificate serves everyone: it names 127.0.0.1 and localhost, is good for servers and
//! clients, and its CN is `root`. Members present it on both ports and to each other (with
//! `--client-cert-auth` and `--peer-client-cert-auth`, so a connection without a certificate
//! from the CA is refused); clients present it too, so once `--auth` turns auth on every
//! client is root by its certificate, as etcd maps a CN to a user.

use std::ops::Deref;
use std::path::Path;

use anyhow::Context;
use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

mod files;
pub use files::{TlsFiles, CERTIFICATE_USER};

impl TlsFiles {
    fn etcd(&self) -> anyhow::Result<TlsOptions> {
        let read = |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        Ok(TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?)))
    }

    fn keel(&self) -> anyhow::Result<keel_client::ConnectOptions> {
        let tls = keel_client::Tls::from_files(&self.ca, Some(&self.cert), Some(&self.key))?;
        Ok(keel_client::ConnectOptions::new().with_tls(tls))
    }
}

/// The members' client URLs, and how a client reaches them (plain, or TLS with the run's
/// certificate). Derefs to the URLs.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    urls: Vec<String>,
    etcd_tls: Option<TlsOptions>,
    keel: keel_client::ConnectOptions,
}

impl Endpoints {
    /// Plain HTTP/2 to `urls`.
    pub fn plain(urls: Vec<String>) -> Endpoints {
        Endpoints { urls, ..Endpoints::default() }
    }

    /// TLS to `urls` with `files`.
    pub fn with_tls(urls: Vec<String>, files: &TlsFiles) -> anyhow::Result<Endpoints> {
        Ok(Endpoints { urls, etcd_tls: Some(files.etcd()?), keel: files.keel()? })
    }

    /// etcd-client's options with `base`'s timeouts and this run's TLS.
    pub fn etcd_options(&self, base: ConnectOptions) -> ConnectOptions {
        match &self.etcd_tls {
            Some(tls) => base.with_tls(tls.clone()),
            None => base,
        }
    }

    /// keel-client's options (TLS when the run has it).
    pub fn keel_options(&self) -> &keel_client::ConnectOptions {
        &self.keel
    }

    pub fn has_tls(&self) -> bool {
        self.etcd_tls.is_some()
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }
}

impl Deref for Endpoints {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.urls
    }
}
