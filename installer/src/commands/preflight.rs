//! `coder-install preflight`: apply's checks alone, changing nothing.

use crate::args::OutputFormat;
use crate::args::{RegistryLoginArgs, ReleaseArgs, TargetArgs, ValuesArgs};
use coder_deploy::apply::ApplyOptions;
use coder_deploy::cluster;
use coder_deploy::preflight::Outcome;
use coder_deploy::release::{Release, ReleaseSource};

/// `coder-install preflight`.
#[derive(Debug, clap::Args)]
pub struct PreflightArgs {
    /// Which release.
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Chart values.
    #[command(flatten)]
    pub values: ValuesArgs,
    /// Cluster and namespace.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Site registry access.
    #[command(flatten)]
    pub login: RegistryLoginArgs,
    /// A site registry that already holds the bundle (`coder-install serve`).
    #[command(flatten)]
    pub no_push: crate::args::NoPushArgs,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Runs `preflight`; exits non-zero when a check fails.
pub async fn run(args: PreflightArgs) -> anyhow::Result<()> {
    let source = args.release.source()?;
    let release = Release::load(&source)?;
    let options = ApplyOptions {
        namespace: args.target.checked_namespace()?,
        cluster: args.target.cluster(),
        values_files: args.values.files.clone(),
        sets: args.values.sets.clone(),
        pull_credentials: None,
        dry_run: true,
        diff: false,
        wait: None,
    };
    let cluster = cluster::connect(&options.cluster).await?;
    let mut report = coder_deploy::apply::check_release(&cluster, &release, &options).await?;
    if let Some(site) = &release.site {
        let (registry_options, _) = args.login.resolve(Some(site))?;
        let check = match (&source, args.no_push.no_push) {
            (ReleaseSource::Bundle { path, .. }, true) => {
                coder_deploy::preflight::check_site_serves_bundle(path, site, &registry_options, None)
                    .await
                    .0
            }
            _ => coder_deploy::preflight::check_site_registry(site, &registry_options).await,
        };
        report.checks.push(check);
    }
    match args.format {
        OutputFormat::Json => super::print_json(&report)?,
        OutputFormat::Text => {
            for check in &report.checks {
                let mark = match check.outcome {
                    Outcome::Pass => "ok  ",
                    Outcome::Warn => "warn",
                    Outcome::Fail => "FAIL",
                };
                println!("[{mark}] {}: {}", check.name, check.detail);
                if let Some(fix) = &check.fix
                    && check.outcome != Outcome::Pass
                {
                    println!("       fix: {fix}");
                }
            }
        }
    }
    if !report.passed() {
        anyhow::bail!("preflight found problems (see above)");
    }
    Ok(())
}
