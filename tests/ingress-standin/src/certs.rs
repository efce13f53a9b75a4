//! Certificates this program makes: the controller's default ("fake") certificate, and the
//! admission webhook's CA and server certificate (kube-webhook-certgen's `create`).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, PEM encoded.
#[derive(Debug, Clone)]
pub struct PemPair {
    /// The certificate.
    pub cert: String,
    /// The PKCS#8 private key.
    pub key: String,
}

impl PemPair {
    /// The certificate followed by the key: one file for nginx's `ssl_certificate` and
    /// `ssl_certificate_key`.
    pub fn combined(&self) -> Vec<u8> {
        format!("{}{}", self.cert, self.key).into_bytes()
    }
}

/// The self-signed certificate ingress-nginx presents for hosts without TLS of their own
/// (same subject as ingress-nginx's).
pub fn default_certificate() -> Result<PemPair, rcgen::Error> {
    let mut params = CertificateParams::new(vec!["ingress.local".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Acme Co");
    params.distinguished_name.push(
        DnType::CommonName,
        "Kubernetes Ingress Controller Fake Certificate",
    );
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A webhook's certificates: a new CA, and a server certificate it signed for `hosts`.
#[derive(Debug, Clone)]
pub struct WebhookCertificates {
    /// The CA certificate (PEM): what the API server trusts (`caBundle`).
    pub ca: String,
    /// The server certificate and its key.
    pub server: PemPair,
}

/// Makes a CA and a server certificate for `hosts` (DNS names or IP addresses), as
/// kube-webhook-certgen's `create` does.
pub fn webhook_certificates(hosts: &[String]) -> Result<WebhookCertificates, rcgen::Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "nil1");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name.push(DnType::OrganizationName, "nil2");
    if let Some(first) = hosts.first() {
        params.distinguished_name.push(DnType::CommonName, first.as_str());
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(WebhookCertificates {
        ca: issuer.pem(),
        server: PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        },
    })
}
