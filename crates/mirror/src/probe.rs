//! The preflight probe: does the site registry take pushes?

use coder_registry::{DeleteOutcome, RegistryClient, RegistryError, RegistryOptions, Repository};
use serde::Serialize;

use crate::target::SiteRegistry;

/// What the writability probe found.
#[derive(Debug, Clone, Serialize)]
pub struct WritableCheck {
    /// The repository probed (`host/prefix/coder-install/write-probe`).
    pub repository: String,
    /// The probe blob's digest.
    pub probe_digest: String,
    /// Whether the probe blob could be deleted again (registries with deletes disabled keep it).
    pub probe_deleted: bool,
    /// One line for a preflight report.
    pub summary: String,
}

/// The repository path (under the site's prefix) of the writability probe.
const PROBE_REPOSITORY: &str = "coder-install/write-probe";
/// The probe blob's content: fixed, so a registry that cannot delete keeps one small blob.
const PROBE_CONTENT: &[u8] = b"coder-install registry write probe\n";

/// Checks that `site` is reachable, accepts the credentials and takes pushes: uploads a small
/// probe blob under `PREFIX/coder-install/write-probe` and deletes it again. A registry with
/// deletes disabled (405) is still writable; the probe blob is then left in place.
pub async fn check_registry_writable(
    site: &SiteRegistry,
    options: &RegistryOptions,
) -> Result<WritableCheck, RegistryError> {
    let client = RegistryClient::new(options.clone())?;
    let repository = Repository {
        registry: site.host.clone(),
        repository: if site.prefix.is_empty() {
            PROBE_REPOSITORY.to_owned()
        } else {
            format!("{}/{PROBE_REPOSITORY}", site.prefix)
        },
    };
    let digest = client.push_small_blob(&repository, PROBE_CONTENT).await?;
    let deleted = client.delete_blob(&repository, &digest).await? == DeleteOutcome::Deleted;
    let summary = if deleted {
        format!("{repository}: writable (probe blob pushed and deleted)")
    } else {
        format!("{repository}: writable, probe blob left in place (the registry has deletes disabled)")
    };
    Ok(WritableCheck {
        repository: repository.to_string(),
        probe_digest: digest,
        probe_deleted: deleted,
        summary,
    })
}
