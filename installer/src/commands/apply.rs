//! `coder-install apply`: the whole pipeline (see [`crate::apply`]) from the command line.

use std::time::Duration;

use crate::args::OutputFormat;
use crate::args::{RegistryLoginArgs, ReleaseArgs, TargetArgs, ValuesArgs, parse_duration};
use coder_deploy::apply::{ApplyOptions, ApplyReport};
use coder_deploy::cluster;
use coder_deploy::objects::Change;
use coder_deploy::preflight::Check;
use coder_deploy::release::{Release, ReleaseSource};
use coder_mirror::{
    MirrorOptions, MirrorReport, SiteRegistry, check_bundle_present, check_registry_writable, mirror_bundle,
};
use coder_registry::RegistryOptions;

/// `coder-install apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Which release.
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// The license file. Required with --bundle (air-gapped installs need an enterprise license
    /// with the air-gap entitlement); optional in connected mode (none: free tier).
    #[arg(long, value_name = "FILE")]
    pub license: Option<std::path::PathBuf>,
    /// Require the bundle to be signed by this Ed25519 public key (SPKI PEM). With --bundle, one
    /// of this and --allow-unsigned is required.
    #[arg(long, value_name = "FILE", requires = "bundle")]
    pub public_key: Option<std::path::PathBuf>,
    /// Apply the bundle without checking its signature (an unsigned bundle, or no vendor key at
    /// hand); the output and the install record say so.
    #[arg(long, requires = "bundle", conflicts_with = "public_key")]
    pub allow_unsigned: bool,
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
    /// Run every check, render, and the server's dry run of every object; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Show a diff of every object that would change.
    #[arg(long)]
    pub diff: bool,
    /// Wait until every workload is ready.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (e.g. 90s, 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = parse_duration, requires = "wait")]
    pub timeout: Duration,
    /// Blobs pushed at once.
    #[command(flatten)]
    pub concurrency: crate::args::ConcurrencyArgs,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Runs `apply`.
pub async fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let reporter = crate::report::for_format(args.format);
    let namespace = args.target.checked_namespace()?;
    let source = args.release.source()?;
    let air_gapped = matches!(source, ReleaseSource::Bundle { .. });

    // 1. Verify the bundle, and pin what was verified: every later read of the bundle (lock,
    // chart, blobs while pushing) is checked against this manifest.
    let mut verified: Option<(String, String)> = None;
    if let ReleaseSource::Bundle { path, .. } = &source {
        if args.public_key.is_none() && !args.allow_unsigned {
            anyhow::bail!(
                "apply --bundle needs --public-key FILE (the vendor's Ed25519 key, to check the bundle's signature) \
                 or --allow-unsigned (to apply it without checking who made it); nothing was pushed or applied"
            );
        }
        verified = Some(
            super::verify::verify_before_use(
                path,
                args.public_key.as_deref(),
                reporter,
                "nothing was pushed or applied",
            )
            .await?,
        );
    }

    // 2. License, offline, before anything is pushed or written (the same gate as `push` and
    // `template --bundle`).
    let license = if air_gapped {
        reporter.step("check license");
        Some(super::license::require_airgap_license(
            args.license.as_deref(),
            "nothing was pushed or applied",
        )?)
    } else if let Some(path) = &args.license {
        reporter.step("check license");
        Some(super::license::read_connected_license(path)?)
    } else {
        None
    };

    let mut release = Release::load_pinned(&source, verified.as_ref().map(|(digest, _)| digest.as_str()))?;
    if let Some((_, signature)) = &verified {
        release.signature.clone_from(signature);
    }
    let (registry_options, pull_credentials) = args.login.resolve(release.site.as_ref())?;
    let options = ApplyOptions {
        namespace,
        cluster: args.target.cluster(),
        values_files: args.values.files.clone(),
        sets: args.values.sets.clone(),
        license,
        pull_credentials,
        dry_run: args.dry_run,
        diff: args.diff,
        wait: args.wait.then_some(args.timeout),
    };
    // Values problems are input errors: report them before touching the cluster.
    release.values(&options.values_files, &options.sets, None)?;

    // 3. Preflight.
    reporter.step("preflight");
    let cluster = cluster::connect(&options.cluster).await?;
    let mut preflight = coder_deploy::apply::preflight(&cluster, &release, &options).await?;
    let pinned = verified.as_ref().map(|(digest, _)| digest.clone());
    let mut served = None;
    if let (Some(site), ReleaseSource::Bundle { path, .. }) = (&release.site, &source) {
        let (check, report) = if args.no_push.no_push {
            present_check(path, site, &registry_options, pinned.clone()).await
        } else {
            (registry_check(site, &registry_options).await, None)
        };
        preflight.checks.push(check);
        served = report;
    }
    if !preflight.passed() {
        anyhow::bail!(preflight.failure_message());
    }

    // 4. Push (or, with --no-push, what the registry serves was checked by preflight).
    if let Some(report) = &served {
        reporter.step(&format!(
            "no push (--no-push): {} serves all {} images and charts",
            report.registry,
            report.artifacts.len()
        ));
        release.use_pushed(report)?;
    } else if let (ReleaseSource::Bundle { path, site }, false) = (&source, options.dry_run) {
        reporter.step(&format!("push {} to {site}", path.display()));
        let push = MirrorOptions {
            concurrency: args.concurrency.get(),
            registry: registry_options.clone(),
            pinned_manifest: pinned,
        };
        let report = mirror_bundle(path, site, &push, reporter).await?;
        reporter.line(&format!(
            "    {} uploaded ({}), {} mounted, {} already present, in {:.1}s",
            report.blobs_uploaded,
            coder_report::human_bytes(report.bytes_sent),
            report.blobs_mounted,
            report.blobs_present + report.blobs_skipped,
            report.seconds
        ));
        release.use_pushed(&report)?;
    }

    // 5–6. Render and deploy.
    let report = coder_deploy::apply::deploy(&cluster, &release, &options, reporter).await?;

    // 7. Wait.
    if let Some(timeout) = options.wait
        && !options.dry_run
    {
        reporter.step(&format!("wait up to {}s for the workloads", timeout.as_secs()));
        let keys: Vec<_> = report.objects.iter().map(|applied| applied.key.clone()).collect();
        coder_deploy::wait::wait_ready(&cluster, &keys, timeout, &|states| {
            let waiting: Vec<String> = states
                .iter()
                .filter(|state| !state.ready)
                .map(|state| format!("{} ({})", state.key, state.detail))
                .collect();
            reporter.line(&format!("    waiting for {}", waiting.join(", ")));
        })
        .await?;
    }
    print_report(&report, args.format)
}

/// Preflight's site registry check: reachable, credentials accepted, pushes allowed.
pub(crate) async fn registry_check(site: &SiteRegistry, options: &RegistryOptions) -> Check {
    match check_registry_writable(site, options).await {
        Ok(check) => Check::pass("site registry", check.summary),
        Err(error) => Check::fail(
            "site registry",
            format!("{site}: {error}"),
            "check --registry, the credentials (--registry-username with --registry-password-stdin, or the \
             Docker config), and --registry-ca or --insecure-registry for its TLS",
        ),
    }
}

/// Preflight's site registry check with `--no-push`: the registry serves every image and chart
/// of the bundle by digest (nothing is written). The report, when it passed, says what to
/// deploy by.
pub(crate) async fn present_check(
    bundle: &std::path::Path,
    site: &SiteRegistry,
    options: &RegistryOptions,
    pinned_manifest: Option<String>,
) -> (Check, Option<MirrorReport>) {
    let mirror = MirrorOptions {
        registry: options.clone(),
        pinned_manifest,
        ..MirrorOptions::default()
    };
    match check_bundle_present(bundle, site, &mirror).await {
        Ok(report) => (
            Check::pass(
                "site registry",
                format!(
                    "{site}: serves every image and chart of the bundle ({} manifests; --no-push: nothing is pushed)",
                    report.manifests_present
                ),
            ),
            Some(report),
        ),
        Err(error) => (
            Check::fail(
                "site registry",
                coder_report::error_chain(&error),
                "start `coder-install serve --bundle FILE --prefix PREFIX` on the site (the --registry prefix), check \
                 --registry and its TLS (--registry-ca or --insecure-registry) and credentials, or drop --no-push to push",
            ),
            None,
        ),
    }
}

/// Prints an apply (or rollback) report.
pub(crate) fn print_report(report: &ApplyReport, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return super::print_json(report);
    }
    for applied in &report.objects {
        if let Some(diff) = &applied.diff {
            print!("{diff}");
        }
    }
    for applied in report
        .objects
        .iter()
        .filter(|applied| applied.change != Change::Unchanged)
    {
        let verb = match (applied.change, report.dry_run) {
            (Change::Created, false) => "created",
            (Change::Created, true) => "would create",
            (Change::Updated, false) => "updated",
            (Change::Updated, true) => "would update",
            (Change::Replaced, false) => "replaced",
            (Change::Replaced, true) => "would replace",
            (Change::Unchanged, _) => "unchanged",
        };
        println!("{verb:>14}  {}", applied.key);
    }
    for key in &report.pruned {
        println!(
            "{:>14}  {key}",
            if report.dry_run { "would prune" } else { "pruned" }
        );
    }
    let changed = report.changed();
    let summary = if changed == 0 && report.pruned.is_empty() {
        "no changes".to_owned()
    } else {
        format!("{changed} changed, {} pruned", report.pruned.len())
    };
    println!(
        "{} {} ({}) in namespace {}: {} objects, {summary}{}; revision {}",
        coder_deploy::release::PRODUCT,
        report.version,
        report.mode,
        report.namespace,
        report.objects.len(),
        if report.dry_run {
            " (dry run: nothing was changed)"
        } else {
            ""
        },
        report.revision
    );
    let admin_secret = coder_deploy::render::secret_names::ADMIN_PASSWORD;
    if !report.dry_run && report.secrets.created.iter().any(|name| name == admin_secret) {
        println!(
            "The first admin's password was generated into Secret {namespace}/{admin_secret} (kept \
             across upgrades; never logged). Read it once, sign in and change it:\n  \
             kubectl -n {namespace} get secret {admin_secret} -o jsonpath='{{.data.password}}' | base64 -d",
            namespace = report.namespace
        );
    }
    Ok(())
}
