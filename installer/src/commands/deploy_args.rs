//! Flags shared by the commands that render or deploy: which release, which values, which
//! cluster and namespace.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{InputArgs, RegistryArgs};
use coder_deploy::cluster::ClusterOptions;
use coder_deploy::release::ReleaseSource;
use coder_mirror::SiteRegistry;
use coder_registry::{Credentials, RegistryOptions};

/// Which release: a bundle pushed to a site registry, or the spec and lock (connected).
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The offline bundle (air-gapped mode). Without it: connected mode, images pulled from
    /// their original registries by the lock's digests.
    #[arg(long, value_name = "FILE", requires = "registry")]
    pub bundle: Option<PathBuf>,
    /// The site registry the bundle's images go to, `HOST[:PORT][/PREFIX]`.
    #[arg(long, value_name = "HOST[/PREFIX]", requires = "bundle")]
    pub registry: Option<SiteRegistry>,
    /// Connected mode's spec and lock.
    #[command(flatten)]
    pub inputs: InputArgs,
}

impl ReleaseArgs {
    /// The release source these flags name.
    pub fn source(&self) -> anyhow::Result<ReleaseSource> {
        match (&self.bundle, &self.registry) {
            (Some(path), Some(site)) => Ok(ReleaseSource::Bundle {
                path: path.clone(),
                site: site.clone(),
            }),
            (Some(_), None) => {
                anyhow::bail!("--bundle needs --registry: the site registry its images are pushed to")
            }
            (None, _) => Ok(ReleaseSource::Connected(Box::new(super::load_inputs(
                &self.inputs,
            )?))),
        }
    }
}

/// Chart values.
#[derive(Debug, clap::Args)]
pub struct ValuesArgs {
    /// A YAML values file; repeatable, later files win. Keys: charts/coder/values.yaml.
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Set one value, e.g. `--set manager.replicas=2`; repeatable, wins over files.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

/// Which cluster and namespace.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// The namespace the platform lives in.
    #[arg(short = 'n', long, default_value = "coder", value_name = "NAME")]
    pub namespace: String,
    /// The kubeconfig. Default: $KUBECONFIG, then ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context. Default: its current context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl TargetArgs {
    /// The cluster options.
    pub fn cluster(&self) -> ClusterOptions {
        ClusterOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }

    /// Checks the namespace name (DNS-1123 label).
    pub fn checked_namespace(&self) -> anyhow::Result<String> {
        let name = &self.namespace;
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            anyhow::bail!(
                "--namespace {name:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
            );
        }
        Ok(name.clone())
    }
}

/// Site registry credentials.
#[derive(Debug, clap::Args)]
pub struct RegistryLoginArgs {
    /// Username for the site registry (also used for the cluster's image pull Secret). Default:
    /// the Docker config's credentials for the registry, if any (then no pull Secret is made).
    #[arg(long, value_name = "USER", requires = "registry_password_stdin")]
    pub registry_username: Option<String>,
    /// Read the site registry's password from stdin.
    #[arg(long, requires = "registry_username")]
    pub registry_password_stdin: bool,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl RegistryLoginArgs {
    /// Registry options (flags, Docker config, and the credentials given here for `site`), and
    /// those credentials for the pull Secret. The password is read from stdin once.
    pub fn resolve(
        &self,
        site: Option<&SiteRegistry>,
    ) -> anyhow::Result<(RegistryOptions, Option<(String, String)>)> {
        let mut options = super::registry_options(&self.registry)?;
        let Some(username) = &self.registry_username else {
            return Ok((options, None));
        };
        let password = super::read_password_stdin()?;
        if let Some(site) = site {
            options.credentials.insert(
                &site.host,
                Credentials {
                    username: username.clone(),
                    password: password.clone(),
                },
            );
        }
        Ok((options, Some((username.clone(), password))))
    }
}

/// Parses `90s`, `10m`, `1h` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |index| text.split_at(index));
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 10m or 1h"))?;
    let per_unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{text:?}: the unit must be s, m or h")),
    };
    let seconds = value
        .checked_mul(per_unit)
        .filter(|seconds| *seconds <= MAX_DURATION_SECONDS)
        .ok_or_else(|| format!("{text:?} is too long: at most {}h", MAX_DURATION_SECONDS / 3600))?;
    Ok(Duration::from_secs(seconds))
}

/// The longest duration [`parse_duration`] accepts: a year, far beyond any wait or probe (and
/// far from overflowing a deadline computed from it).
pub const MAX_DURATION_SECONDS: u64 = 366 * 24 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_huge_ones_are_refused_without_overflow() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for huge in [
            "18446744073709551615h",
            "5124095576030432h",
            "9999999999m",
            "99999999999s",
        ] {
            let error = parse_duration(huge).expect_err(huge);
            assert!(error.contains("too long"), "{error}");
        }
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("h").is_err());
    }
}
