//! HTTPS: the certificate chain and key from PEM files (as the distribution registry's
//! `http.tls`), HTTP/1.1 only.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::ServeError;

/// Builds the TLS acceptor from a PEM certificate chain (server certificate first) and its key.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let config_error = |what: &Path, reason: String| ServeError::Config {
        what: format!("{}", what.display()),
        reason,
    };
    let pem = std::fs::read(cert).map_err(|error| config_error(cert, error.to_string()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|error| config_error(cert, format!("not a PEM certificate chain: {error}")))?;
    if chain.is_empty() {
        return Err(config_error(
            cert,
            "holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)".to_owned(),
        ));
    }
    let pem = std::fs::read(key).map_err(|error| config_error(key, error.to_string()))?;
    let private_key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|error| config_error(key, format!("not a PEM private key: {error}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| config_error(cert, error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|error| {
            config_error(
                cert,
                format!(
                    "the certificate and --tls-key {} do not go together: {error}",
                    key.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
