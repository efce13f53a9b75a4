//! `ingress-standin`: a stand-in for the ingress-nginx controller image and for
//! kube-webhook-certgen, for the test world where neither image can be downloaded.
//!
//! One program, two personalities chosen by the name it runs as (or its first argument):
//!
//! - `nginx-ingress-controller` ([`controller`]): follows the Ingresses of its class in its
//!   namespace by listing them (and their Services, TLS Secrets, the IngressClass and the
//!   controller ConfigMap) once a second, renders an nginx.conf ([`model`], [`render`]), checks it
//!   with `nginx -t` and reloads Debian's nginx, which runs as its child ([`nginx`]). It serves
//!   `/healthz`, writes the published Service's address into each Ingress's status (while it
//!   holds the election Lease, [`leader`]) and answers the validating admission webhook
//!   ([`webhook`]).
//! - `kube-webhook-certgen` ([`certgen`]): `create` makes the webhook's CA and certificate as a
//!   Secret, `patch` writes that CA into the ValidatingWebhookConfiguration.
//!
//! See the README for what it does not implement of ingress-nginx.

pub mod certgen;
pub mod certs;
pub mod controller;
pub mod http;
pub mod leader;
pub mod model;
pub mod nginx;
pub mod render;
pub mod shared;
pub mod webhook;

#[cfg(test)]
mod render_tests;

/// Writes one log line to stderr: an RFC 3339 time (UTC) and `message`.
pub fn log(message: impl std::fmt::Display) {
    eprintln!("{} {message}", k8s_openapi::jiff::Timestamp::now());
}
