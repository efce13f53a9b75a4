//! A small OCI distribution client: exactly the calls the installer needs, streaming, with the
//! registry's authentication flows, retries, and errors that tell 401 from 403 from 404.
//!
//! `oci-client` was the alternative; it holds whole blobs in memory on some paths and
//! re-serialises manifests on push, and both matter here. This client never buffers a blob:
//! [`RegistryClient::blob`] hands back the response for the caller to stream, hashing as it goes.
//!
//! One module a part: `client` (how a request is sent: options, authorisation, retries, error
//! answers), `pull` (manifests and blobs down), `upload` (blobs and manifests up, mounts,
//! deletes), `referrers` (the OCI 1.1 referrers API), `auth` (challenges and credentials), `oci`
//! (the documents' types) and `blob_io` (hashing and copying byte ranges of files).

mod auth;
pub mod blob_io;
mod chunked;
mod client;
mod error;
pub mod oci;
mod pull;
mod referrers;
mod upload;

use sha2::{Digest, Sha256};

pub use auth::{Challenge, CredentialStore, Credentials};
pub use blob_io::FileRange;
pub use chunked::{FALLBACK_CHUNK, SMALLEST_CHUNK};
pub(crate) use client::{
    BodyFactory, Call, MAX_MANIFEST_BYTES, error_body, expect_success, header_value, read_limited,
};
pub use client::{Redirects, RegistryClient, RegistryOptions, Repository, api_host};
pub(crate) use coder_bundle_spec::format::ACCEPTED_MANIFEST_MEDIA_TYPES;
pub use error::RegistryError;
pub use pull::FetchedManifest;
pub use upload::{BlobPushOutcome, BlobUpload, DeleteOutcome, MountOutcome, PUSH_ACTION};

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
