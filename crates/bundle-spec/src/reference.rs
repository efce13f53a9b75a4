//! Image references (`[registry/]repository[:tag][@digest]`), normalised as Docker does.

use std::fmt;

use crate::SpecError;

/// The registry that references without one (e.g. `postgres:13`) point at.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference.
///
/// `original` keeps the text exactly as written in the spec (it is what bundles record as the
/// image's name); the other fields are the normalised parts: `postgres:13` is registry
/// `docker.io`, repository `library/postgres`, tag `13`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// The reference as written.
    pub original: String,
    /// The registry host, with its port if any.
    pub registry: String,
    /// The repository path inside the registry.
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest (`sha256:<64 hex>`), if any.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses a reference. A tag or a digest is required: a bare repository would silently mean
    /// `latest`, a moving target that has no place in a pinned install.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let invalid = |reason: &str| SpecError::InvalidReference {
            reference: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() || text.trim() != text {
            return Err(invalid("it is empty or has surrounding spaces"));
        }
        if text.contains("://") {
            return Err(invalid(
                "write an image reference without a scheme, e.g. registry.example.com/team/app:1.0",
            ));
        }
        let (name_and_tag, digest) = match text.split_once('@') {
            Some((name, digest)) => {
                validate_digest(digest).map_err(|reason| invalid(&reason))?;
                (name, Some(digest.to_owned()))
            }
            None => (text, None),
        };
        let last_slash = name_and_tag.rfind('/').map_or(0, |index| index + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                (&name_and_tag[..colon], Some(name_and_tag[colon + 1..].to_owned()))
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = &tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                && !tag.starts_with(['.', '-']);
            if !valid {
                return Err(invalid(&format!("tag {tag:?} is not a valid tag")));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(invalid(
                "it has neither a tag nor a digest; pin it, e.g. `app:1.2.3` or `app@sha256:…`",
            ));
        }

        let (registry, repository) = split_name(name).map_err(|reason| invalid(&reason))?;
        Ok(Self {
            original: text.to_owned(),
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The repository's full name, `registry/repository` (e.g. `docker.io/library/postgres`):
    /// what a cosign signature's `docker-reference` names.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository pinned to `digest`: `registry/repository@digest`.
    pub fn pinned(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn tag_or_digest(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// A repository name without tag or digest (`[registry/]repository`, as a cosign signature's
/// `docker-reference` writes it), normalised as [`ImageReference::parse`] does, Docker Hub's
/// other host names included: `registry/repository`.
pub fn normalised_repository_name(name: &str) -> Result<String, SpecError> {
    if name.contains(['@', ' ']) || name.rsplit('/').next().is_some_and(|last| last.contains(':')) {
        return Err(SpecError::InvalidReference {
            reference: name.to_owned(),
            reason: "a repository name has no tag or digest".to_owned(),
        });
    }
    // Docker Hub's aliases name it too: `index.docker.io/nginx` is `docker.io/library/nginx`.
    let name = match name.split_once('/') {
        Some((host, rest)) if DOCKER_HUB_ALIASES.contains(&host) => format!("{DOCKER_HUB}/{rest}"),
        _ => name.to_owned(),
    };
    let (registry, repository) = split_name(&name).map_err(|reason| SpecError::InvalidReference {
        reference: name.clone(),
        reason,
    })?;
    Ok(format!("{registry}/{repository}"))
}

/// Docker Hub's other names for itself, as cosign and Docker write them.
const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", "registry-1.docker.io"];

/// `[registry/]repository` into the registry (Docker Hub when none is named) and the repository
/// path (`library/` added to Docker Hub's official images), or why it is not a valid name.
fn split_name(name: &str) -> Result<(String, String), String> {
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    if repository.is_empty() || !repository.split('/').all(is_path_component) {
        return Err(format!(
            "repository {repository:?} must be lowercase letters, digits and separators (. _ - /)"
        ));
    }
    Ok((registry, repository))
}

fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    !bytes.is_empty()
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks that `digest` is `sha256:` followed by 64 lowercase hex digits.
pub fn validate_digest(digest: &str) -> Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        Some(_) => Err(format!(
            "digest {digest:?} must be sha256: followed by 64 lowercase hex digits"
        )),
        None => Err(format!(
            "digest {digest:?} uses an unsupported algorithm; only sha256 is supported"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_normalise_as_references_do_docker_hub_aliases_included() {
        for (name, expected) in [
            ("nginx", "docker.io/library/nginx"),
            ("index.docker.io/nginx", "docker.io/library/nginx"),
            ("registry-1.docker.io/team/app", "docker.io/team/app"),
            ("r.example.test:5000/team/app", "r.example.test:5000/team/app"),
        ] {
            assert_eq!(
                normalised_repository_name(name).as_deref().ok(),
                Some(expected),
                "{name}"
            );
        }
        let reference = ImageReference::parse("postgres:13").expect("reference");
        assert_eq!(reference.repository_name(), "docker.io/library/postgres");
        for bad in ["app:1", "app@sha256:00", "Team/App", ""] {
            assert!(normalised_repository_name(bad).is_err(), "{bad}");
        }
    }

    fn parts(text: &str) -> (String, String, Option<String>, Option<String>) {
        let reference = ImageReference::parse(text).expect("valid reference");
        (
            reference.registry,
            reference.repository,
            reference.tag,
            reference.digest,
        )
    }

    #[test]
    fn docker_hub_short_names_are_normalised() {
        assert_eq!(
            parts("postgres:13"),
            (
                "docker.io".into(),
                "library/postgres".into(),
                Some("13".into()),
                None
            )
        );
        assert_eq!(
            parts("coderenvs/coder-service:1.0.0"),
            (
                "docker.io".into(),
                "coderenvs/coder-service".into(),
                Some("1.0.0".into()),
                None
            )
        );
    }

    #[test]
    fn registries_with_ports_and_digests_parse() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parts(&format!("127.0.0.1:5000/team/app:1.0@{digest}")),
            (
                "127.0.0.1:5000".into(),
                "team/app".into(),
                Some("1.0".into()),
                Some(digest.clone())
            )
        );
        assert_eq!(
            parts(&format!("localhost/app@{digest}")),
            ("localhost".into(), "app".into(), None, Some(digest))
        );
    }

    #[test]
    fn unpinned_and_malformed_references_are_refused() {
        for bad in [
            "postgres",
            "registry.example.com:5000/app",
            "Upper/app:1",
            "app:",
            "app:-bad",
            "app@sha256:abc",
            "app@md5:0123",
            "https://registry.example.com/app:1",
            " app:1",
            "",
        ] {
            assert!(ImageReference::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
