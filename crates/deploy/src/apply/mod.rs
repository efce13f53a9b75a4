//! The apply pipeline: [`run`] reads in the order it works — verify, license, preflight, push,
//! render and deploy, wait — each step a function of its own below or in the file beside it
//! (`deploy.rs` renders and writes under the namespace's Lease).

mod deploy;
mod timings;
mod verify;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use coder_bundle::read::OpenedBundle;
use coder_mirror::{MirrorOptions, MirrorReport, SiteRegistry, mirror_bundle};
use coder_progress::{Progress, human_bytes};
use coder_registry::RegistryOptions;

use crate::cluster::{Cluster, ClusterOptions};
use crate::license_gate::check_license;
use crate::objects::{Applied, Change, ObjectKey};
use crate::preflight::PreflightReport;
use crate::release::{Release, ReleaseSource};
use crate::render::render;

pub use deploy::{
    ReleaseRecord, configured_storage_class, render_and_write, render_for, resolved_values, write_release,
};
pub use timings::{StepTime, Timings, WAIT};
pub use verify::{
    ImageSignaturePolicy, SignaturePolicy, VerifiedBundle, verify_before_use, verify_signature_before_use,
};

/// How to apply: the cluster side (also used by `preflight` and `rollback`).
pub struct ApplyOptions {
    /// The target namespace.
    pub namespace: String,
    /// The cluster.
    pub cluster: ClusterOptions,
    /// `--values` files, in order.
    pub values_files: Vec<PathBuf>,
    /// `--set` arguments, in order.
    pub sets: Vec<String>,
    /// Registry credentials for the cluster's image pulls (a pull Secret is made from them).
    pub pull_credentials: Option<coder_registry::Credentials>,
    /// Change nothing.
    pub dry_run: bool,
    /// Show a diff of every object that changes.
    pub diff: bool,
    /// Wait for readiness, up to this long.
    pub wait: Option<Duration>,
}

/// Everything [`run`] needs: the release, the checks it must pass, and how to reach the site
/// registry and the cluster.
pub struct ApplyRequest {
    /// The bundle (air-gapped) or the spec and lock (connected).
    pub source: ReleaseSource,
    /// Whose signature the bundle must carry.
    pub signature: SignaturePolicy,
    /// Whose cosign signatures its images must carry (`--image-key`).
    pub image_signatures: ImageSignaturePolicy,
    /// The license file (required for a bundle).
    pub license: Option<PathBuf>,
    /// The site registry's access (TLS, credentials), for preflight and push.
    pub registry: RegistryOptions,
    /// Blobs pushed at once.
    pub concurrency: usize,
    /// The site registry already serves the bundle (`coder-install serve`, or an earlier push):
    /// preflight checks that every image is there by digest, and nothing is pushed.
    pub no_push: bool,
    /// Where the backup taken before a version change goes (`--backup-dir`); `None`
    /// (`--no-backup`): none is taken.
    pub backup_folder: Option<PathBuf>,
    /// The cluster side.
    pub options: ApplyOptions,
}

/// What an apply did.
#[derive(Debug, Serialize)]
pub struct ApplyReport {
    /// The namespace.
    pub namespace: String,
    /// Connected or air-gapped.
    pub mode: crate::release::InstallMode,
    /// The version applied.
    pub version: String,
    /// The revision recorded (unchanged by a dry run).
    pub revision: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Per object, what changed.
    pub objects: Vec<Applied>,
    /// Objects of earlier revisions deleted because this one no longer renders them.
    pub pruned: Vec<ObjectKey>,
    /// The kept Secrets.
    pub secrets: crate::secrets::GeneratedSecrets,
    /// Seconds spent rendering and applying (without push and wait).
    pub deploy_seconds: f64,
    /// The backup of the database taken before this apply changed the version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::backup::BackupRef>,
    /// The wall time of each step.
    pub timings: Timings,
}

impl ApplyReport {
    /// Objects that changed (or would).
    pub fn changed(&self) -> usize {
        self.objects
            .iter()
            .filter(|applied| applied.change != Change::Unchanged)
            .count()
    }
}

/// Runs the cluster checks for applying `release` with `options`: renders it for the cluster,
/// then [`crate::preflight::check_cluster`].
pub async fn check_release(
    cluster: &Cluster,
    release: &Release,
    options: &ApplyOptions,
) -> crate::Result<PreflightReport> {
    let values = resolved_values(release, options)?;
    let manifests = render(&release.request(&values, &options.namespace, cluster.pdb_api()))?;
    let storage_class = configured_storage_class(&values);
    Ok(crate::preflight::check_cluster(
        cluster,
        &options.namespace,
        &manifests.objects,
        storage_class.as_deref(),
    )
    .await)
}

/// What the refusals before the push leave undone.
const NOTHING_DONE: &str = "nothing was pushed or applied";

/// Applies a release: the whole pipeline, each step reported, nothing pushed or written before
/// the bundle, the license, the values and the cluster's preflight have passed.
pub async fn run(request: ApplyRequest, progress: &dyn Progress) -> crate::Result<ApplyReport> {
    let ApplyRequest {
        source,
        signature,
        image_signatures,
        license,
        registry,
        concurrency,
        no_push,
        backup_folder,
        options,
    } = request;
    let mut stopwatch = timings::Stopwatch::start();
    let verified = verify_bundle(&source, &signature, &image_signatures, progress).await?;
    if verified.is_some() {
        stopwatch.lap("verify");
    }
    let air_gapped = matches!(source, ReleaseSource::Bundle { .. });
    if air_gapped || license.is_some() {
        progress.step("check license");
    }
    let license = check_license(air_gapped, license.as_deref(), NOTHING_DONE, progress)?;
    let mut release = load(&source, verified.as_ref())?;
    release.license = license;
    stopwatch.lap("license");
    let site_check = SiteCheck {
        registry: &registry,
        served: verified
            .as_ref()
            .filter(|_| no_push)
            .map(|verified| &verified.bundle),
    };
    let Preflight {
        cluster,
        report,
        served,
    } = preflight(&release, &options, site_check, progress).await?;
    if !report.passed() {
        return Err(crate::DeployError::PreflightFailed(report.failure_message()));
    }
    stopwatch.lap("preflight");
    let mirror = MirrorOptions {
        concurrency,
        registry,
    };
    if put_images_in_place(
        served,
        verified.as_ref(),
        &mirror,
        &mut release,
        options.dry_run,
        progress,
    )
    .await?
    {
        stopwatch.lap("push");
    }
    if let (Some(folder), false) = (&backup_folder, options.dry_run) {
        let backup = crate::backup::backup_before_upgrade(
            &cluster,
            &options.namespace,
            &release.version,
            folder,
            progress,
        )
        .await
        .map_err(crate::DeployError::BackupBeforeUpgrade)?;
        if backup.is_some() {
            stopwatch.lap("backup");
        }
        release.backup = backup.map(|report| report.reference());
    }
    let mut report = render_and_write(&cluster, &release, &options, progress).await?;
    stopwatch.take(&report.timings);
    if wait(&cluster, &report, &options, progress).await? {
        stopwatch.lap(timings::WAIT);
    }
    report.timings = stopwatch.finish();
    Ok(report)
}

/// Step 1: a bundle verified whole, its signature and its images' as the policies say; `None`
/// in connected mode.
async fn verify_bundle(
    source: &ReleaseSource,
    signature: &SignaturePolicy,
    image_signatures: &ImageSignaturePolicy,
    progress: &dyn Progress,
) -> crate::Result<Option<VerifiedBundle>> {
    match source {
        ReleaseSource::Bundle { path, .. } => {
            let mut verified = verify_before_use(path, signature, NOTHING_DONE, progress).await?;
            verified.require_image_signatures(image_signatures, NOTHING_DONE, progress)?;
            Ok(Some(verified))
        }
        ReleaseSource::Connected(_) => Ok(None),
    }
}

/// Loads the release: from the verified bundle (its lock and chart read by the digests of the
/// manifest that verified), or from the spec and lock.
fn load(source: &ReleaseSource, verified: Option<&VerifiedBundle>) -> crate::Result<Release> {
    match (source, verified) {
        (ReleaseSource::Bundle { site, .. }, Some(verified)) => verified.release(site),
        _ => Release::load(source),
    }
}

/// How preflight checks the site registry.
pub struct SiteCheck<'a> {
    /// Its access.
    pub registry: &'a RegistryOptions,
    /// With `--no-push`: the bundle it must already serve.
    pub served: Option<&'a OpenedBundle>,
}

/// What preflight found: the connected cluster, every check, and with `--no-push` what the
/// site registry serves of the bundle.
pub struct Preflight {
    /// The cluster it connected to.
    pub cluster: Cluster,
    /// Every check, in the order they ran.
    pub report: PreflightReport,
    /// With `--no-push`, when the site registry serves the whole bundle: what it serves.
    pub served: Option<MirrorReport>,
}

/// Step 3, and `coder-install preflight`: values problems are input errors, reported before the
/// cluster is touched; then the cluster's checks and the site registry's (it takes pushes, or
/// with `--no-push` it serves the bundle). A failed check is in the report, not an error.
pub async fn preflight(
    release: &Release,
    options: &ApplyOptions,
    site_check: SiteCheck<'_>,
    progress: &dyn Progress,
) -> crate::Result<Preflight> {
    release.values(&options.values_files, &options.sets, None)?;
    progress.step("preflight");
    let cluster = crate::cluster::connect(&options.cluster).await?;
    let mut report = check_release(&cluster, release, options).await?;
    let mut served = None;
    if let Some(site) = &release.site {
        let check = match site_check.served {
            Some(bundle) => {
                let (check, report) =
                    crate::preflight::check_site_serves_bundle(bundle, site, site_check.registry).await;
                served = report;
                check
            }
            None => crate::preflight::check_site_registry(site, site_check.registry).await,
        };
        report.checks.push(check);
    }
    Ok(Preflight {
        cluster,
        report,
        served,
    })
}

/// Step 4: points the release at where its images are: with `--no-push`, where preflight found
/// the site registry serving them (`served`); otherwise, for a bundle and not in a dry run, where
/// they are pushed. Returns whether it pushed.
async fn put_images_in_place(
    served: Option<MirrorReport>,
    verified: Option<&VerifiedBundle>,
    mirror: &MirrorOptions,
    release: &mut Release,
    dry_run: bool,
    progress: &dyn Progress,
) -> crate::Result<bool> {
    if let Some(report) = served {
        progress.step(&format!(
            "no push (--no-push): {} serves all {} images and charts",
            report.registry,
            report.artifacts.len()
        ));
        release.use_pushed(&report)?;
        return Ok(false);
    }
    match (verified, release.site.clone(), dry_run) {
        (Some(verified), Some(site), false) => {
            push(&verified.bundle, &site, mirror, release, progress).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Pushes the bundle's images into the site registry, and points the release at what was
/// pushed.
async fn push(
    bundle: &OpenedBundle,
    site: &SiteRegistry,
    options: &MirrorOptions,
    release: &mut Release,
    progress: &dyn Progress,
) -> crate::Result<()> {
    progress.step(&format!("push {} to {site}", bundle.path().display()));
    let report = mirror_bundle(bundle, site, options, progress).await?;
    progress.line(&format!(
        "    {} uploaded ({}), {} mounted, {} already present, in {:.1}s",
        report.blobs_uploaded,
        human_bytes(report.bytes_sent),
        report.blobs_mounted,
        report.blobs_present + report.blobs_skipped,
        report.seconds
    ));
    release.use_pushed(&report)
}

/// Step 7: with `--wait` (and not a dry run), wait until every applied workload is ready;
/// returns whether it waited.
pub(crate) async fn wait(
    cluster: &Cluster,
    report: &ApplyReport,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> crate::Result<bool> {
    let Some(timeout) = options.wait.filter(|_| !options.dry_run) else {
        return Ok(false);
    };
    progress.step(&format!("wait up to {}s for the workloads", timeout.as_secs()));
    let keys: Vec<_> = report.objects.iter().map(|applied| applied.key.clone()).collect();
    crate::wait::wait_ready(cluster, &keys, timeout, &|states| {
        let waiting: Vec<String> = states
            .iter()
            .filter(|state| !state.ready)
            .map(|state| format!("{} ({})", state.key, state.detail))
            .collect();
        progress.line(&format!("    waiting for {}", waiting.join(", ")));
    })
    .await?;
    Ok(true)
}
