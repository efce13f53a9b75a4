//! The validating admission webhook: an AdmissionReview v1 for an Ingress of the class is
//! answered by rendering the config with the candidate Ingress in place and running
//! `nginx -t` on it; refused (with nginx's message, or the plan's) if either fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::{Method, Request, Response, StatusCode};
use k8s_openapi::api::networking::v1::Ingress;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::http::{Body, respond};
use crate::log;
use crate::model::{Snapshot, plan};
use crate::nginx::test_in_scratch;
use crate::render::{Ports, render};
use crate::shared::{Shared, is_of_class};

/// The largest AdmissionReview accepted.
const MAX_REVIEW_BYTES: usize = 4 * 1024 * 1024;

/// What the webhook needs to check a candidate Ingress.
pub struct Validator {
    /// The nginx program.
    pub nginx: PathBuf,
    /// A writable directory for the throw-away configs.
    pub scratch: PathBuf,
    /// nginx's ports.
    pub ports: Ports,
    /// The class whose Ingresses are checked (others are allowed as they are).
    pub ingress_class: String,
    /// The default certificate file's contents.
    pub default_certificate: Vec<u8>,
    /// The controller's latest snapshot.
    pub shared: Arc<Shared>,
}

/// A TLS acceptor for the webhook's certificate and key files (PEM).
pub fn tls_acceptor(certificate: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|error| format!("reading {}: {error}", certificate.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", certificate.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|error| format!("reading {}: {error}", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| error.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves the webhook on `listener` until it fails.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, validator: Arc<Validator>) {
    let handler = move |request: Request<hyper::body::Incoming>| {
        let validator = validator.clone();
        async move { validator.handle(request).await }
    };
    if let Err(error) = crate::http::serve(listener, Some(acceptor), handler).await {
        log(format!("the admission webhook stopped: {error}"));
    }
}

impl Validator {
    async fn handle(&self, request: Request<hyper::body::Incoming>) -> Response<Body> {
        if request.method() != Method::POST {
            return respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "POST an AdmissionReview",
            );
        }
        let body = match Limited::new(request.into_body(), MAX_REVIEW_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(error) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("reading the body: {error}"),
                );
            }
        };
        let review: Value = match serde_json::from_slice(&body) {
            Ok(review) => review,
            Err(error) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("not an AdmissionReview: {error}"),
                );
            }
        };
        let Some(uid) = review["request"]["uid"].as_str().map(str::to_owned) else {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                "the AdmissionReview has no request.uid",
            );
        };
        let verdict = self.review(&review["request"]).await;
        let mut response = json!({ "uid": uid, "allowed": verdict.is_ok() });
        if let Err(message) = &verdict {
            response["status"] = json!({ "code": 400, "reason": "BadRequest", "message": message });
        }
        let answer = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        });
        match serde_json::to_vec(&answer) {
            Ok(bytes) => respond(StatusCode::OK, "application/json", Bytes::from(bytes)),
            Err(error) => respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", error.to_string()),
        }
    }

    /// `Ok` to allow, `Err(message)` to refuse.
    async fn review(&self, request: &Value) -> Result<(), String> {
        if request["operation"].as_str() == Some("DELETE") || request["object"].is_null() {
            return Ok(());
        }
        let mut ingress: Ingress = serde_json::from_value(request["object"].clone())
            .map_err(|error| format!("the object is not an Ingress: {error}"))?;
        if !is_of_class(&ingress, &self.ingress_class) {
            return Ok(());
        }
        if ingress.metadata.namespace.is_none() {
            ingress.metadata.namespace = request["namespace"].as_str().map(str::to_owned);
        }
        let key = (ingress.metadata.namespace.clone(), ingress.metadata.name.clone());
        let name = format!(
            "{}/{}",
            key.0.as_deref().unwrap_or_default(),
            key.1.as_deref().unwrap_or_default()
        );
        let mut snapshot: Snapshot = self.shared.snapshot.read().await.clone().unwrap_or_default();
        snapshot
            .ingresses
            .retain(|other| (other.metadata.namespace.clone(), other.metadata.name.clone()) != key);
        snapshot.ingresses.push(ingress);
        let plan = plan(&snapshot, &self.default_certificate);
        let problems: Vec<String> = plan
            .problems
            .iter()
            .filter(|problem| problem.ingress == name && problem.refuses)
            .map(ToString::to_string)
            .collect();
        if !problems.is_empty() {
            let message = problems.join("; ");
            log(format!("admission: refused ingress {name}: {message}"));
            return Err(message);
        }
        let ports = self.ports;
        let result = test_in_scratch(&self.nginx, &self.scratch, |layout| {
            (render(&plan, layout, ports), plan.certificates.clone())
        })
        .await;
        match result {
            Ok(()) => {
                log(format!("admission: allowed ingress {name}"));
                Ok(())
            }
            Err(error) => {
                let message = format!("ingress {name}: {error}");
                log(format!("admission: refused {message}"));
                Err(message)
            }
        }
    }
}
