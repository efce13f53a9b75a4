//! `coder-install push`: mirror a bundle into a site registry, without touching a cluster.

use std::path::PathBuf;

use crate::args::{BundleTrustArgs, OutputFormat, RegistryLoginArgs};
use coder_deploy::license_gate::require_airgap_license;
use coder_mirror::{MirrorOptions, SiteRegistry, mirror_bundle};
use coder_progress::human_bytes;
use coder_registry::RegistryOptions;

/// The site registry and how to reach it.
#[derive(Debug, clap::Args)]
pub struct SiteRegistryArgs {
    /// The site registry the bundle's images go to, with an optional path prefix: images go
    /// to PREFIX/<original repository path>.
    #[arg(long = "registry", value_name = crate::args::SITE_REGISTRY_VALUE)]
    pub registry: SiteRegistry,
    /// Its credentials, plain HTTP and extra CAs.
    #[command(flatten)]
    pub login: RegistryLoginArgs,
}

impl SiteRegistryArgs {
    /// Registry options: the flags, the Docker config, and the credentials given on the command
    /// line (the password read from stdin), which take precedence for the site registry.
    pub fn registry_options(&self) -> anyhow::Result<RegistryOptions> {
        Ok(self.login.resolve(Some(&self.registry))?.0)
    }
}

/// `coder-install push`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("signature_check").required(true).args(["public_key", "allow_unsigned"])))]
pub struct PushArgs {
    /// The bundle file; for a split bundle, its index, any part, or the name they share. It is
    /// verified first (every blob hashed, the signature as the flags below ask), and every read
    /// after is pinned to the manifest that verified.
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,
    /// Whose signatures the bundle and its images must carry.
    #[command(flatten)]
    pub trust: BundleTrustArgs,
    /// The site registry.
    #[command(flatten)]
    pub site: SiteRegistryArgs,
    /// The license file: mirroring a bundle is an air-gapped install's first step, so it needs an
    /// enterprise license with the air-gap feature, checked offline as `apply --bundle` does.
    #[arg(long, value_name = "FILE")]
    pub license: Option<PathBuf>,
    /// Blobs pushed at once.
    #[command(flatten)]
    pub concurrency: crate::args::ConcurrencyArgs,
    /// Whole blobs or chunks.
    #[command(flatten)]
    pub chunks: crate::args::ChunkArgs,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// What a refusal before the upload leaves undone.
const NOTHING_PUSHED: &str = "nothing was pushed";

/// Checks the license, verifies the bundle (and its images' signatures when asked), pushes it
/// pinned to the verified manifest, and prints what went where.
pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    let progress = crate::progress::for_format(args.format);
    require_airgap_license(args.license.as_deref(), NOTHING_PUSHED, progress)?;
    let verified = args.trust.verify(&args.bundle, NOTHING_PUSHED, progress).await?;
    let mut registry = args.site.registry_options()?;
    args.chunks.apply_to(&mut registry);
    let options = MirrorOptions {
        concurrency: args.concurrency.get(),
        registry,
    };
    let report = mirror_bundle(&verified.bundle, &args.site.registry, &options, progress).await?;
    match args.format {
        OutputFormat::Json => {
            let mut document = serde_json::to_value(&report)?;
            document["signature"] = verified.signature.clone().into();
            document["manifest"] = verified.manifest_digest().into();
            super::print_json(&document)
        }
        OutputFormat::Text => {
            for artifact in &report.artifacts {
                let place = match &artifact.tag {
                    Some(tag) => format!("{}:{tag}", artifact.repository),
                    None => artifact.repository.clone(),
                };
                println!("{:<40} -> {place}@{}", artifact.reference, artifact.pull_digest);
                if let Some(note) = &artifact.note {
                    println!("    note: {note}");
                }
            }
            println!(
                "pushed {} to {}: {} blobs uploaded ({}), {} mounted, {} already present, {} skipped; {} manifests pushed, {} present; {} tags set; in {:.1}s",
                report.bundle,
                report.registry,
                report.blobs_uploaded,
                human_bytes(report.bytes_sent),
                report.blobs_mounted,
                report.blobs_present,
                report.blobs_skipped,
                report.manifests_pushed,
                report.manifests_present,
                report.tags_set,
                report.seconds
            );
            if let Some(size) = report.upload_chunk_size {
                println!("uploads in chunks of {}", human_bytes(size));
            }
            println!("signature: {}", verified.signature);
            Ok(())
        }
    }
}
