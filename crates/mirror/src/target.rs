//! Where a bundle's content goes inside the air gap: the site registry and an optional path
//! prefix, and the one rule that maps an original reference to its place there.

use std::fmt;
use std::str::FromStr;

use coder_bundle_spec::ImageReference;

/// A site registry and path prefix, as given to `--registry HOST[:PORT][/PREFIX]`.
///
/// `registry.site:5000/mirror` and `docker.io/library/postgres:13` give
/// `registry.site:5000/mirror/library/postgres`: the original repository path is kept whole
/// under the prefix, so two images with the same last path component never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SiteRegistry {
    /// `host[:port]`.
    pub host: String,
    /// Path prefix without leading or trailing slashes; empty for none.
    pub prefix: String,
}

/// Why a `--registry` value was refused.
#[derive(Debug, thiserror::Error)]
#[error("--registry {value:?}: {reason}; write it as HOST[:PORT][/PREFIX], e.g. registry.site:5000/coder")]
pub struct SiteRegistryError {
    value: String,
    reason: String,
}

impl SiteRegistry {
    /// The repository (`host/prefix/original-path`, without tag or digest) that `original` is
    /// pushed to.
    pub fn repository_for(&self, original: &ImageReference) -> String {
        format!("{}/{}", self.host, self.repository_path_for(original))
    }

    /// The repository path inside the site registry (`prefix/original-path`).
    pub fn repository_path_for(&self, original: &ImageReference) -> String {
        if self.prefix.is_empty() {
            original.repository.clone()
        } else {
            format!("{}/{}", self.prefix, original.repository)
        }
    }

    /// The pinned reference (`host/prefix/original-path@digest`) a manifest is pulled by.
    pub fn pinned(&self, original: &ImageReference, digest: &str) -> String {
        format!("{}@{digest}", self.repository_for(original))
    }
}

impl FromStr for SiteRegistry {
    type Err = SiteRegistryError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let refuse = |reason: &str| SiteRegistryError {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        if value.contains("://") {
            return Err(refuse(
                "leave out the scheme (use --insecure-registry for plain HTTP)",
            ));
        }
        let trimmed = value.trim_end_matches('/');
        let (host, prefix) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        if host.is_empty() {
            return Err(refuse("the host is empty"));
        }
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        let host_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
        if !host_ok {
            return Err(refuse("the host has characters a host name cannot have"));
        }
        if let Some(port) = port
            && port.parse::<u16>().is_err()
        {
            return Err(refuse("the port is not a number from 0 to 65535"));
        }
        if !prefix.is_empty() {
            // Borrow the reference parser's repository rules: a prefix must be a valid path.
            let probe = format!("{host}/{prefix}/probe:tag");
            ImageReference::parse(&probe).map_err(|_| {
                refuse("the prefix must be lowercase letters, digits and separators (. _ - /)")
            })?;
        }
        Ok(Self {
            host: host.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl fmt::Display for SiteRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            f.write_str(&self.host)
        } else {
            write!(f, "{}/{}", self.host, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> ImageReference {
        ImageReference::parse(text).expect("valid reference")
    }

    #[test]
    fn original_repository_paths_are_kept_under_the_prefix() {
        let site: SiteRegistry = "registry.site:5000/mirror/coder/".parse().expect("valid");
        assert_eq!(site.host, "registry.site:5000");
        assert_eq!(site.prefix, "mirror/coder");
        assert_eq!(
            site.repository_for(&reference("postgres:13")),
            "registry.site:5000/mirror/coder/library/postgres"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            site.pinned(&reference("ghcr.io/coder/coder-service:1.0"), &digest),
            format!("registry.site:5000/mirror/coder/coder/coder-service@{digest}")
        );
        let bare: SiteRegistry = "127.0.0.1:5000".parse().expect("valid");
        assert_eq!(
            bare.repository_for(&reference("postgres:13")),
            "127.0.0.1:5000/library/postgres"
        );
        assert_eq!(bare.to_string(), "127.0.0.1:5000");
    }

    #[test]
    fn bad_values_say_how_to_write_one() {
        for bad in [
            "https://registry.site",
            "",
            ":5000",
            "registry.site:99999",
            "reg/UPPER",
        ] {
            let error = bad.parse::<SiteRegistry>().expect_err(bad).to_string();
            assert!(error.contains("HOST[:PORT][/PREFIX]"), "{error}");
        }
    }
}
