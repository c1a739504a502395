//! TLS on both ports, with etcd's flags (`--cert-file`, `--key-file`, `--client-cert-auth`,
//! `--trusted-ca-file`, and their `--peer-` twins): the server side (a rustls config and the
//! accept loop that runs handshakes), the peer client side (tonic's TLS connector), and the
//! user a verified client certificate names (its CN, as etcd takes it).
//!
//! The member runs handshakes itself instead of leaving them to tonic's server: the client
//! port's authority shim (`api::AuthorityFix`) must see decrypted HTTP/2, so it wraps the TLS
//! stream, not the TCP one. Each handshake runs in its own task with a deadline, at most
//! `HANDSHAKES_IN_FLIGHT` at once, so a client that opens a connection and sends nothing
//! holds neither the accept loop nor more than one task, and a flood of them is bounded.
//!
//! Certificates and keys are read once, at start: replacing the files needs a restart (etcd
//! re-reads them on each handshake).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

// ---- limits ----

/// The longest a handshake may take: a peer that has not finished by then is cut off.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes run at once per listener; further connections wait in the kernel's backlog.
pub const HANDSHAKES_IN_FLIGHT: usize = 256;

/// The largest certificate, key or CA file read: a PEM file of a few chains is a few KiB.
pub const PEM_FILE_BYTES_MAX: u64 = 1 << 20;

/// One port's TLS files, as the flags name them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--cert-file` / `--peer-cert-file`: this member's certificate chain (PEM).
    pub cert: PathBuf,
    /// `--key-file` / `--peer-key-file`: its private key (PEM).
    pub key: PathBuf,
    /// `--trusted-ca-file` / `--peer-trusted-ca-file`: the CA that signs the other side's
    /// certificates (PEM). Given, a connection without a certificate it signed is refused,
    /// with or without `client_cert_auth` (etcd 3.4 does the same).
    pub trusted_ca: Option<PathBuf>,
    /// `--client-cert-auth` / `--peer-client-cert-auth`: a verified client certificate's CN
    /// is the caller's user once auth is on (client port).
    pub client_cert_auth: bool,
}

/// The server side of a port: certificate, key, and the CA client certificates must chain
/// to, if any. ALPN offers HTTP/2 and HTTP/1.1 (the client port also serves
/// `/health` and `/metrics` to plain HTTP clients).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    // As etcd: a trusted CA alone already requires every client to present a certificate it
    // signed; `client_cert_auth` adds that the certificate's CN is the caller's user.
    let builder = if let Some(ca) = files.trusted_ca.as_deref() {
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(ca)?), provider)
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certificates(&files.cert)?, private_key(&files.key)?).map_err(|e| {
        format!("{} and {} do not make a usable key pair: {e}", files.cert.display(), files.key.display())
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side of peer connections to `https://` peer URLs: the peer CA to verify the
/// other member, and this member's certificate to present (as etcd members do).
pub fn peer_client_config(files: &TlsFiles) -> Result<tonic::transport::ClientTlsConfig, String> {
    let mut config = tonic::transport::ClientTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(read_pem(&files.cert)?, read_pem(&files.key)?));
    if let Some(ca) = &files.trusted_ca {
        root_store(ca)?; // refused here, with the file's name, rather than at the first connection
        config = config.ca_certificate(tonic::transport::Certificate::from_pem(read_pem(ca)?));
    }
    Ok(config)
}

/// The connections of `incoming` that complete a TLS handshake with `config`; the others are
/// logged and closed. Ends when the consumer drops the stream.
pub fn accept_tls<S>(
    incoming: S,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, Infallible>>
where
    S: Stream<Item = Result<TcpStream, Infallible>> + Send + 'static,
{
    let (done, handshaken) = mpsc::channel(HANDSHAKES_IN_FLIGHT);
    tokio::spawn(run_handshakes(Box::pin(incoming), TlsAcceptor::from(config), done));
    tokio_stream::wrappers::ReceiverStream::new(handshaken).map(Ok)
}

async fn run_handshakes<S>(mut incoming: S, acceptor: TlsAcceptor, done: mpsc::Sender<TlsStream<TcpStream>>)
where
    S: Stream<Item = Result<TcpStream, Infallible>> + Unpin,
{
    let slots = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    loop {
        let stream = tokio::select! {
            () = done.closed() => return,
            next = incoming.next() => match next {
                Some(Ok(stream)) => stream,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (acceptor, done) = (acceptor.clone(), done.clone());
        tokio::spawn(async move {
            let from = stream.peer_addr().ok();
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = done.send(tls).await;
                }
                Ok(Err(e)) => rejected(from, &e.to_string()),
                Err(_) => rejected(from, &format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}")),
            }
            drop(slot);
        });
    }
}

/// As etcd logs it: a rejected connection is an operator's misconfiguration more often than
/// an attack, and says who and why.
fn rejected(from: Option<SocketAddr>, why: &str) {
    let from = from.map_or_else(|| "an unknown address".to_string(), |addr| addr.to_string());
    tracing::warn!("rejected connection from {from}: {why}");
}

/// The CN of a client certificate (DER): the user it names with `--client-cert-auth`, as in
/// etcd. `None` for bytes that are not a certificate or a certificate without a CN.
pub fn common_name(certificate: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_string())
}

fn root_store(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(ca)? {
        roots.add(certificate).map_err(|e| format!("{}: not a CA certificate: {e}", ca.display()))?;
    }
    Ok(roots)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certificates)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| format!("{}: not a PEM private key file: {e}", path.display()))
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(PEM_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(format!("{}: larger than {PEM_FILE_BYTES_MAX} bytes, not a PEM file", path.display()));
    }
    Ok(bytes)
}

/// Fuzz target: the CN of arbitrary bytes taken for a certificate.
pub fn fuzz_common_name(data: &[u8]) {
    let _ = common_name(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_is_the_subjects_cn() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "keel");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().expect("key");
        let certificate = params.self_signed(&key).expect("certificate");
        assert_eq!(common_name(certificate.der()), Some("alice".to_string()));
        let mut without_cn = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        without_cn.distinguished_name = rcgen::DistinguishedName::new();
        let certificate = without_cn.self_signed(&key).expect("certificate");
        assert_eq!(common_name(certificate.der()), None);
    }

    #[test]
    fn common_name_of_garbage_is_none() {
        assert_eq!(common_name(b""), None);
        assert_eq!(common_name(&[0x30, 0x82, 0xff, 0xff]), None);
    }
}
