//! What the site registry already holds, as a have-list: every manifest, config and layer
//! digest under the repositories a bundle spec's images and charts are pushed to. `bundle
//! --have-list` then leaves those blobs out, so an update carries only what the site lacks,
//! without the old bundle at hand.
//!
//! Every tag of each repository is read (`tags/list`), its manifest fetched (an index's
//! children too, those the registry holds), and the blobs they name collected. Nothing is
//! downloaded but manifests.

use std::collections::BTreeSet;

use coder_bundle::make::create::HAVE_LIST_HEADER;
use coder_bundle_spec::ImageReference;
use coder_registry::oci::{ImageManifest, IndexDocument};
use coder_registry::{RegistryClient, RegistryError, Repository};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::SiteRegistry;
use crate::error::MirrorError;

/// What the site registry holds for a spec's repositories.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The site registry and prefix it was taken of.
    pub registry: String,
    /// When (RFC 3339, UTC).
    pub taken_at: String,
    /// Per repository, what it holds.
    pub repositories: Vec<RepositoryInventory>,
    /// Every digest found (manifests, configs, layers), each once.
    pub digests: BTreeSet<String>,
}

/// One repository of an [`Inventory`].
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryInventory {
    /// `host/prefix/path`.
    pub repository: String,
    /// Its tags (none: the registry does not have it).
    pub tags: Vec<String>,
    /// Manifests read (an index's children included).
    pub manifests: usize,
}

impl Inventory {
    /// The have-list `bundle --have-list` reads: a header (where and when, how much) and one
    /// digest a line, sorted.
    pub fn have_list(&self) -> String {
        let held = self
            .repositories
            .iter()
            .filter(|repository| !repository.tags.is_empty())
            .count();
        let mut text = format!(
            "{HAVE_LIST_HEADER}{} at {}\n# {} of {} repositories held, {} digests\n",
            self.registry,
            self.taken_at,
            held,
            self.repositories.len(),
            self.digests.len()
        );
        for digest in &self.digests {
            text.push_str(digest);
            text.push('\n');
        }
        text
    }
}

/// The site repositories of `originals` (image references, or chart references as bundles
/// name them: `charts/<name>:<version>`), each once, in order.
pub fn site_repositories(site: &SiteRegistry, originals: &[String]) -> Result<Vec<String>, MirrorError> {
    let mut repositories = Vec::new();
    for original in originals {
        let reference = ImageReference::parse(original)
            .map_err(|error| MirrorError::Bundle(format!("{original}: {error}")))?;
        let path = site.repository_path_for(&reference);
        if !repositories.contains(&path) {
            repositories.push(path);
        }
    }
    Ok(repositories)
}

/// Takes the inventory of `repositories` (paths under the site registry's host), `concurrency`
/// repositories at a time.
pub async fn take_inventory(
    client: &RegistryClient,
    site: &SiteRegistry,
    repositories: &[String],
    concurrency: usize,
) -> Result<Inventory, MirrorError> {
    let now = jiff::Timestamp::now();
    let taken_at = now.round(jiff::Unit::Second).unwrap_or(now).to_string();
    let at = |path: &String| Repository {
        registry: site.host.clone(),
        repository: path.clone(),
    };
    // The first repository alone: a registry that cannot be reached (or refuses the login)
    // fails once, not once per repository.
    let mut found = Vec::with_capacity(repositories.len());
    if let Some(first) = repositories.first() {
        found.push(repository_inventory(client, at(first)).await?);
    }
    let rest: Vec<(RepositoryInventory, BTreeSet<String>)> =
        futures_util::stream::iter(repositories.iter().skip(1))
            .map(|path| repository_inventory(client, at(path)))
            .buffered(concurrency.max(1))
            .try_collect()
            .await?;
    found.extend(rest);
    let mut digests = BTreeSet::new();
    let mut inventories = Vec::with_capacity(found.len());
    for (inventory, found) in found {
        digests.extend(found);
        inventories.push(inventory);
    }
    Ok(Inventory {
        registry: site.to_string(),
        taken_at,
        repositories: inventories,
        digests,
    })
}

/// One repository: its tags, and every digest their manifests name.
async fn repository_inventory(
    client: &RegistryClient,
    repository: Repository,
) -> Result<(RepositoryInventory, BTreeSet<String>), MirrorError> {
    let checking = |source: RegistryError| MirrorError::Checking {
        what: format!("what {repository} holds"),
        source: Box::new(source),
    };
    let tags = client.tags(&repository).await.map_err(checking)?;
    let mut digests = BTreeSet::new();
    let mut manifests = 0;
    let mut pending: Vec<String> = tags.clone();
    let mut seen = BTreeSet::new();
    while let Some(reference) = pending.pop() {
        let manifest = match client.manifest(&repository, &reference).await {
            Ok(manifest) => manifest,
            // An index's child the registry lacks (only some platforms were pushed).
            Err(RegistryError::ManifestNotFound { .. }) if reference.starts_with("sha256:") => continue,
            Err(error) => return Err(checking(error)),
        };
        if !seen.insert(manifest.digest.clone()) {
            continue;
        }
        manifests += 1;
        digests.insert(manifest.digest.clone());
        if let Ok(index) = serde_json::from_slice::<IndexDocument>(&manifest.bytes) {
            pending.extend(index.manifests.into_iter().map(|child| child.digest));
        } else if let Ok(image) = serde_json::from_slice::<ImageManifest>(&manifest.bytes) {
            digests.insert(image.config.digest);
            digests.extend(image.layers.into_iter().map(|layer| layer.digest));
        }
    }
    Ok((
        RepositoryInventory {
            repository: format!("{}/{}", repository.registry, repository.repository),
            tags,
            manifests,
        },
        digests,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_have_list_says_where_and_when_then_lists_each_digest_once() {
        let inventory = Inventory {
            registry: "registry.site:5000/coder".to_owned(),
            taken_at: "2026-12-07T13:00:00Z".to_owned(),
            repositories: vec![
                RepositoryInventory {
                    repository: "registry.site:5000/coder/team/app".to_owned(),
                    tags: vec!["1.0".to_owned()],
                    manifests: 1,
                },
                RepositoryInventory {
                    repository: "registry.site:5000/coder/team/db".to_owned(),
                    tags: Vec::new(),
                    manifests: 0,
                },
            ],
            digests: [
                format!("sha256:{}", "b".repeat(64)),
                format!("sha256:{}", "a".repeat(64)),
            ]
            .into_iter()
            .collect(),
        };
        let list = inventory.have_list();
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(
            lines[0],
            "# coder-install inventory of registry.site:5000/coder at 2026-12-07T13:00:00Z"
        );
        assert_eq!(lines[1], "# 1 of 2 repositories held, 2 digests");
        assert_eq!(
            lines[2..],
            [
                format!("sha256:{}", "a".repeat(64)),
                format!("sha256:{}", "b".repeat(64))
            ]
        );
    }

    #[test]
    fn repositories_go_under_the_prefix_once_each() {
        let site: SiteRegistry = "registry.site:5000/coder".parse().expect("site");
        let repositories = site_repositories(
            &site,
            &[
                "docker.io/library/postgres:13".to_owned(),
                "docker.io/library/postgres:15".to_owned(),
                "charts/coder:1.2.3".to_owned(),
            ],
        )
        .expect("repositories");
        assert_eq!(repositories, ["coder/library/postgres", "coder/charts/coder"]);
    }
}
