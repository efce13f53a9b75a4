//! Whether a blob's upload failed because of the bundle: the registry client streams bytes
//! without hashing them (the registry checks them), so when an upload fails the bundle is
//! checked here, to tell a damaged copy (say so, and to run `verify`) from a registry's own
//! refusal.

use coder_registry::blob_io::{digest_of, hash_range};
use coder_registry::{FileRange, RegistryError};

/// What was wrong with the bundle when the upload of `source` as `digest` failed with `failure`,
/// or `None` when the failure is the registry's (or the connection's) own. A range that could
/// not be read is the bundle's fault; a refusal (4xx) is when the range does not hash to
/// `digest`; other failures are not about the bytes and are left as they are.
pub(crate) async fn bundle_fault(
    source: &FileRange,
    digest: &str,
    failure: &RegistryError,
) -> Option<String> {
    match failure {
        RegistryError::Io { source, .. } => Some(format!("the bundle could not be read: {source}")),
        RegistryError::Rejected { .. } | RegistryError::Status { .. } => {
            let range = source.clone();
            let hashed = tokio::task::spawn_blocking(move || {
                hash_range(range.file.as_ref(), range.offset, range.size, &mut |_| {})
            })
            .await
            .ok()?;
            match hashed {
                Ok(hasher) => {
                    let actual = digest_of(hasher);
                    (actual != digest).then(|| format!("its bytes hash to {actual}, not {digest}"))
                }
                Err(error) => Some(format!("the bundle could not be read: {error}")),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A file holding `content` between a head and a tail, and the range of `content` in it.
    fn range_of(dir: &std::path::Path, content: &[u8]) -> FileRange {
        let path = dir.join("bundle");
        std::fs::write(&path, [b"head".as_slice(), content, b"tail"].concat()).expect("write");
        FileRange {
            file: Arc::new(std::fs::File::open(&path).expect("open")),
            offset: 4,
            size: content.len() as u64,
        }
    }

    fn refusal(status: u16, detail: &str) -> RegistryError {
        RegistryError::Rejected {
            registry: "registry.example".to_owned(),
            repository: "coder/app".to_owned(),
            what: "blob".to_owned(),
            status,
            detail: detail.to_owned(),
        }
    }

    #[tokio::test]
    async fn a_refused_upload_is_blamed_on_the_bundle_only_when_its_bytes_do_not_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content = b"the blob's bytes".to_vec();
        let range = range_of(dir.path(), &content);
        let digest = coder_registry::sha256_digest(&content);
        let invalid = refusal(
            400,
            "DIGEST_INVALID: provided digest did not match uploaded content",
        );

        assert_eq!(bundle_fault(&range, &digest, &invalid).await, None);

        let other = format!("sha256:{}", "0".repeat(64));
        let fault = bundle_fault(&range, &other, &invalid)
            .await
            .expect("the bundle's fault");
        assert_eq!(fault, format!("its bytes hash to {digest}, not {other}"));

        // A range the file does not hold cannot be read: the bundle's fault too.
        let beyond = FileRange {
            size: range.size + 10,
            ..range.clone()
        };
        let fault = bundle_fault(&beyond, &other, &invalid)
            .await
            .expect("the bundle's fault");
        assert!(fault.starts_with("the bundle could not be read"), "{fault}");

        // Failures that are not about the bytes are not checked against the bundle.
        let transport = RegistryError::Unauthorized {
            registry: "registry.example".to_owned(),
            repository: "coder/app".to_owned(),
            with_credentials: true,
        };
        assert_eq!(bundle_fault(&range, &other, &transport).await, None);
    }
}
