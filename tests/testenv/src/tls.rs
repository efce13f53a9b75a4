//! A throw-away certificate authority for the tests' TLS servers.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::{Result, io_context};

/// A certificate authority made for one test, trusted only by the clients the test configures.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct ServerCertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PKCS#8 PEM).
    pub key: PathBuf,
}

impl TestCa {
    /// Generates a new CA key and self-signed CA certificate.
    pub fn new() -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "coder-install test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The CA certificate, PEM encoded: what clients add to their trusted roots.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a server certificate for `127.0.0.1` and `localhost` and writes it to `dir` as
    /// `NAME.crt` and `NAME.key`.
    pub fn issue_server_cert(&self, dir: &Path, name: &str) -> Result<ServerCertFiles> {
        self.issue_server_cert_for(dir, name, &[])
    }

    /// As [`Self::issue_server_cert`], valid also for `extra_names` (IP addresses or DNS names).
    pub fn issue_server_cert_for(
        &self,
        dir: &Path,
        name: &str,
        extra_names: &[String],
    ) -> Result<ServerCertFiles> {
        let mut names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        names.extend_from_slice(extra_names);
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = ServerCertFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        write_file(&files.cert, cert.pem().as_bytes())?;
        write_file(&files.key, key.serialize_pem().as_bytes())?;
        Ok(files)
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> Result<()> {
        write_file(path, self.cert_pem().as_bytes())
    }
}

pub(crate) fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    std::fs::write(path, contents).map_err(io_context(format!("writing {}", path.display())))
}
