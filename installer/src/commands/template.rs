//! `coder-install template`: the manifests `apply` would apply, on stdout, for GitOps.

use crate::args::{BundleTrustArgs, ReleaseArgs, ValuesArgs};
use coder_deploy::license_gate::check_license;
use coder_deploy::release::{Release, ReleaseSource};
use coder_deploy::render::{PdbApi, render, secret_names};

/// `coder-install template`.
#[derive(Debug, clap::Args)]
pub struct TemplateArgs {
    /// Which release (with --bundle and --registry, images point at the site registry).
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// With --bundle: whose signatures the bundle and its images must carry (the bundle is
    /// verified and its manifest pinned before the chart and lock are read from it).
    #[command(flatten)]
    pub trust: BundleTrustArgs,
    /// The license file. Required with --bundle (air-gapped installs need an enterprise license
    /// with the air-gap entitlement, checked offline as `apply --bundle` does); optional in
    /// connected mode. It is checked only: the output refers to the license Secret by name.
    #[arg(long, value_name = "FILE")]
    pub license: Option<std::path::PathBuf>,
    /// Chart values.
    #[command(flatten)]
    pub values: ValuesArgs,
    /// The namespace the manifests are for.
    #[arg(short = 'n', long, default_value = "coder", value_name = "NAME")]
    pub namespace: String,
    /// The Kubernetes version to render for (`1.20` renders PodDisruptionBudgets as
    /// policy/v1beta1; 1.21 and newer as policy/v1).
    #[arg(long, default_value = "1.33", value_name = "MAJOR.MINOR")]
    pub kube_version: String,
}

/// What a refusal leaves undone.
const NOTHING_RENDERED: &str = "nothing was rendered";

/// Runs `template`: checks the license (the air-gap gate with --bundle), verifies the bundle,
/// then renders from it pinned to the verified manifest.
pub async fn run(args: &TemplateArgs) -> anyhow::Result<()> {
    let pdb_api = match args
        .kube_version
        .split_once('.')
        .map(|(major, minor)| (major.parse::<u32>(), minor.parse::<u32>()))
    {
        Some((Ok(1), Ok(minor))) if minor < 21 => PdbApi::V1Beta1,
        Some((Ok(1), Ok(_))) => PdbApi::V1,
        _ => anyhow::bail!(
            "--kube-version {:?}: write it as MAJOR.MINOR, e.g. 1.30",
            args.kube_version
        ),
    };
    let source = args.release.source()?;
    let progress = &coder_progress::WarningsOnly;
    check_license(
        matches!(source, ReleaseSource::Bundle { .. }),
        args.license.as_deref(),
        NOTHING_RENDERED,
        progress,
    )?;
    let (release, signature) = match &source {
        ReleaseSource::Bundle { path, site } => {
            let verified = args.trust.verify(path, NOTHING_RENDERED, progress).await?;
            let header = format!(
                "\n# bundle {} (manifest {}): signature {}.",
                path.display(),
                verified.manifest_digest(),
                verified.signature
            );
            (verified.release(site)?, header)
        }
        ReleaseSource::Connected(_) => (Release::load(&source)?, String::new()),
    };
    let values = release.values(&args.values.files, &args.values.sets, None)?;
    let manifests = render(&release.request(&values, &args.namespace, pdb_api))?;
    println!(
        "# {} {} ({}), rendered by coder-install {} for namespace {}.{signature}\n\
         # apply also creates the namespace and these Secrets, which this output only refers to:\n\
         #   {} (key `password`, unless postgres.host is set), {} (key `token`),\n\
         #   {} (key `license`, optional).",
        coder_deploy::release::PRODUCT,
        release.version,
        release.mode,
        env!("CARGO_PKG_VERSION"),
        args.namespace,
        secret_names::DATABASE,
        secret_names::ENVPROXY_TOKEN,
        secret_names::LICENSE,
    );
    print!("{}", manifests.to_yaml()?);
    Ok(())
}
