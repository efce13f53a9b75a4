//! Pushes a built image to a registry with `oci-client`: blobs the registry lacks, then the
//! manifest's exact bytes under the tag (`push_manifest_raw`: `push_manifest` would
//! re-serialise the JSON and change the digest).

use std::path::PathBuf;

use coder_bundle_spec::ImageReference;
use coder_registry::{CredentialStore, Credentials};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use reqwest::header::HeaderValue;

use crate::Error;
use crate::image::{Blob, Image};

/// Where and how to push.
#[derive(Debug, Clone)]
pub struct PushTarget {
    /// `registry/repository:tag`.
    pub reference: ImageReference,
    /// Registries (`host[:port]`) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM files) to trust.
    pub ca_files: Vec<PathBuf>,
    /// Credentials for the reference's registry, if any.
    pub credentials: Option<Credentials>,
}

impl PushTarget {
    /// Parses `reference`, which must carry a tag and no digest (the digest is the image's).
    pub fn parse_reference(reference: &str) -> Result<ImageReference, Error> {
        let name_a_tag = || {
            Error::Input(format!(
                "--push {reference:?}: name a tag, e.g. registry.example.com/coderenvs/coder-service:1.0.0 \
                 (the digest is the built image's and cannot be chosen)"
            ))
        };
        let last_component = reference.rsplit('/').next().unwrap_or(reference);
        if reference.contains('@') || !last_component.contains(':') {
            return Err(name_a_tag());
        }
        let parsed = ImageReference::parse(reference)
            .map_err(|error| Error::Input(format!("--push {reference:?}: {error}")))?;
        if parsed.digest.is_some() || parsed.tag.is_none() {
            return Err(name_a_tag());
        }
        Ok(parsed)
    }

    /// The credentials for `reference`'s registry: `explicit` when given, else the Docker
    /// config's entry for that host (`DOCKER_CONFIG` or `~/.docker/config.json`).
    pub fn credentials_for(
        reference: &ImageReference,
        explicit: Option<Credentials>,
    ) -> Result<Option<Credentials>, Error> {
        if explicit.is_some() {
            return Ok(explicit);
        }
        let store = CredentialStore::from_docker_config().map_err(|error| Error::Input(error.to_string()))?;
        Ok(store.get(&reference.registry).cloned())
    }
}

/// Pushes `image` to `target`; returns the digest the registry stores it under.
pub async fn push(image: &Image, target: &PushTarget) -> Result<String, Error> {
    let reference = &target.reference;
    let tag = reference.tag.clone().unwrap_or_default();
    let oci_reference = Reference::with_tag(reference.registry.clone(), reference.repository.clone(), tag);
    let client = client(target)?;
    let auth = match &target.credentials {
        Some(credentials) => RegistryAuth::Basic(credentials.username.clone(), credentials.password.clone()),
        None => RegistryAuth::Anonymous,
    };
    let with_credentials = target.credentials.is_some();
    let registry_error = |step: String| {
        let reference = reference.original.clone();
        move |error: oci_client::errors::OciDistributionError| {
            let detail = error_chain(&error);
            Error::Registry {
                hint: hint(&detail, with_credentials),
                reference,
                step,
                detail,
            }
        }
    };
    client
        .auth(&oci_reference, &auth, RegistryOperation::Push)
        .await
        .map_err(registry_error("authenticating".to_owned()))?;
    for blob in [&image.layer, &image.config] {
        push_blob(&client, &oci_reference, blob)
            .await
            .map_err(registry_error(format!("pushing blob {}", blob.digest)))?;
    }
    let content_type = HeaderValue::from_static(image.manifest.media_type);
    client
        .push_manifest_raw(&oci_reference, image.manifest.data.clone(), content_type)
        .await
        .map_err(registry_error("pushing the manifest".to_owned()))?;
    Ok(image.digest().to_owned())
}

async fn push_blob(
    client: &Client,
    reference: &Reference,
    blob: &Blob,
) -> Result<(), oci_client::errors::OciDistributionError> {
    if client.blob_exists(reference, &blob.digest).await? {
        return Ok(());
    }
    client
        .push_blob(reference, blob.data.clone(), &blob.digest)
        .await?;
    Ok(())
}

fn client(target: &PushTarget) -> Result<Client, Error> {
    let mut config = ClientConfig {
        protocol: ClientProtocol::HttpsExcept(target.insecure_registries.clone()),
        // One PUT per blob rather than 4 MiB PATCHes: the layer is in memory already.
        use_monolithic_push: true,
        ..ClientConfig::default()
    };
    for path in &target.ca_files {
        let pem = std::fs::read(path).map_err(|source| Error::Io {
            what: format!("reading --registry-ca {}", path.display()),
            source,
        })?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::Input(format!(
                "--registry-ca {}: not a PEM certificate",
                path.display()
            )));
        }
        config.extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data: pem,
        });
    }
    Ok(Client::new(config))
}

/// The error and its causes, leaving out a cause whose text the previous one already holds
/// (the HTTP client repeats its messages along the chain).
fn error_chain(error: &oci_client::errors::OciDistributionError) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let message = cause.to_string();
        if !last.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        last = message;
        source = cause.source();
    }
    text
}

/// A suggestion for the usual causes of a failed push, read from the error's text.
fn hint(text: &str, with_credentials: bool) -> &'static str {
    // Status codes are matched with their reason: a bare "401" is also found in a port
    // (`127.0.0.1:40143`), and a certificate problem comes before any answer.
    let unauthorized = text.contains("nauthorized");
    if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        "; the registry's TLS certificate is not trusted: pass --registry-ca FILE (or --insecure-registry HOST for plain HTTP)"
    } else if unauthorized && with_credentials {
        "; the registry refused the user name and password given"
    } else if unauthorized {
        "; the registry wants credentials: `docker login` to it, or pass --username USER --password-stdin"
    } else if text.contains("Forbidden") {
        "; the credentials may not push to this repository"
    } else if text.contains("UnknownIssuer") || text.contains("certificate") {
        "; the registry's TLS certificate is not trusted: pass --registry-ca FILE (or --insecure-registry HOST for plain HTTP)"
    } else if text.contains("Connection refused") || text.contains("dns error") {
        "; is the registry running and the host:port right?"
    } else if text.contains("http://")
        || text.contains("wrong version number")
        || text.contains("InvalidContentType")
    {
        "; for a plain-HTTP registry pass --insecure-registry HOST"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::hint;

    #[test]
    fn hints_read_status_reasons_not_digits_a_port_may_hold() {
        let untrusted = "pushing 127.0.0.1:40143/x: error sending request for url (https://127.0.0.1:40143/v2/): client error (Connect): invalid peer certificate: UnknownIssuer";
        assert!(hint(untrusted, false).contains("--registry-ca"));
        let refused = "HTTP status client error (401 Unauthorized) for url (https://127.0.0.1:5000/v2/)";
        assert!(hint(refused, false).contains("wants credentials"));
        assert!(hint(refused, true).contains("refused the user name"));
        assert_eq!(hint("pushing 127.0.0.1:40301/x: done", false), "");
    }
}
