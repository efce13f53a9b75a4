//! `coder-install preflight`: apply's checks alone, changing nothing.

use crate::args::OutputFormat;
use crate::args::{RegistryLoginArgs, ReleaseArgs, TargetArgs, ValuesArgs};
use coder_bundle::read::OpenedBundle;
use coder_deploy::apply::{ApplyOptions, SiteCheck, preflight};
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
    // Opened once (unverified: preflight reads only its lock, chart and manifests, and writes
    // nothing), for the release and, with --no-push, the presence check.
    let (release, bundle) = match &source {
        ReleaseSource::Bundle { path, site } => {
            let bundle = OpenedBundle::open(path, None)?;
            (Release::from_opened(&bundle, site)?, Some(bundle))
        }
        ReleaseSource::Connected(_) => (Release::load(&source)?, None),
    };
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
    // The site registry's login (its password read from stdin) only where there is one.
    let registry = match &release.site {
        Some(site) => args.login.resolve(Some(site))?.0,
        None => coder_registry::RegistryOptions::default(),
    };
    let site_check = SiteCheck {
        registry: &registry,
        served: bundle.as_ref().filter(|_| args.no_push.no_push),
    };
    let report = preflight(&release, &options, site_check, &coder_progress::Silent)
        .await?
        .report;
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
