//! Certificates made at test time (none is committed): a CA, a certificate for the members
//! (server and client use, for 127.0.0.1 and localhost, on both ports), client certificates by
//! CN, and a stranger CA with a member-like certificate it signed, for the refusals.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One CA and what it signed, written under a directory.
pub struct TestCerts {
    pub ca: PathBuf,
    /// What every member presents, on its client and peer ports and to its peers.
    pub member: CertFiles,
    dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCerts {
    /// A new CA named `name` and a member certificate, written under `dir`.
    pub fn generate(dir: &Path, name: &str) -> TestCerts {
        std::fs::create_dir_all(dir).expect("cert dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate");
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, issuer.pem()).expect("write CA");
        let mut certs =
            TestCerts { ca, member: CertFiles { cert: PathBuf::new(), key: PathBuf::new() }, dir: dir.into(), issuer };
        certs.member = certs.issue(&format!("{name}-member"), "keel member");
        certs
    }

    /// A certificate with common name `cn`, for 127.0.0.1 and localhost, good for servers and
    /// clients alike, signed by this CA; `file_stem` names its files.
    pub fn issue(&self, file_stem: &str, cn: &str) -> CertFiles {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        let files = CertFiles {
            cert: self.dir.join(format!("{file_stem}.pem")),
            key: self.dir.join(format!("{file_stem}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }

    /// The files `issue` wrote for `file_stem`, if it did.
    pub fn existing(&self, file_stem: &str) -> Option<CertFiles> {
        let files = CertFiles {
            cert: self.dir.join(format!("{file_stem}.pem")),
            key: self.dir.join(format!("{file_stem}-key.pem")),
        };
        files.cert.exists().then_some(files)
    }

    /// The CA's certificate as PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca).expect("read CA")
    }
}

impl CertFiles {
    /// As etcd_client's TLS identity.
    pub fn identity(&self) -> etcd_client::Identity {
        let cert = std::fs::read(&self.cert).expect("read certificate");
        let key = std::fs::read(&self.key).expect("read key");
        etcd_client::Identity::from_pem(cert, key)
    }
}
