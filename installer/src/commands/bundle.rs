//! `coder-install bundle`.

use std::path::PathBuf;

use crate::args::{ConcurrencyArgs, InputArgs, OutputFormat, RegistryAccessArgs};
use coder_bundle::make::cache::BlobCache;
use coder_bundle::{BundleOptions, DeltaSource, create};
use coder_progress::human_bytes;

/// `coder-install bundle`.
#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Spec and lock.
    #[command(flatten)]
    pub inputs: InputArgs,
    /// The bundle file to write (with --part-size, the name its parts and index share).
    #[arg(
        short = 'o',
        long = "out",
        value_name = "FILE",
        default_value = "coder.bundle"
    )]
    pub out: PathBuf,
    /// Overwrite the bundle file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Split the bundle for size-limited media: parts FILE.part000, FILE.part001, ... of SIZE
    /// bytes each (the last holds the rest), and FILE.parts.json, the index of every part's size
    /// and SHA-256. Every command reads the parts in place, given FILE, the index or any part;
    /// `cat FILE.part* > FILE` joins them into the whole bundle, byte for byte. SIZE: a number
    /// with K, M, G, T (powers of 1000, as media are labelled: 4700M for a DVD) or Ki, Mi, Gi, Ti
    /// (powers of 1024: 4095Mi for FAT32); at least 64Ki.
    #[arg(long, value_name = "SIZE", value_parser = coder_units::parse_size)]
    pub part_size: Option<u64>,
    /// The cache of manifests, charts and earlier bundles (which share disk with their outputs
    /// by hard links). It must be yours and not writable by every user. Default:
    /// ${XDG_CACHE_HOME:-~/.cache}/coder-install/blob-cache (created private to you).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Blobs downloaded at once.
    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,
    /// Make a delta bundle: leave out the layers an earlier bundle (already applied at the target) carried.
    #[arg(long, value_name = "OLD_BUNDLE", conflicts_with = "have_list")]
    pub delta_from: Option<PathBuf>,
    /// Make a delta bundle: leave out the layers in this list (one sha256 digest a line), e.g.
    /// what the target registry already holds.
    #[arg(long, value_name = "FILE")]
    pub have_list: Option<PathBuf>,
    /// Sign the bundle with this Ed25519 private key (PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes).
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryAccessArgs,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Makes the bundle and prints a summary.
pub async fn run(args: BundleArgs) -> anyhow::Result<()> {
    let inputs = crate::args::load_inputs(&args.inputs)?;
    let options = BundleOptions {
        output: args.out.clone(),
        part_size: args.part_size,
        force: args.force,
        cache_dir: match args.cache.clone().or_else(BlobCache::default_root) {
            Some(dir) => dir,
            None => anyhow::bail!(
                "no cache folder: neither XDG_CACHE_HOME nor HOME is set; pass --cache DIR (a folder of your own)"
            ),
        },
        concurrency: args.concurrency.get(),
        signing_key: args.signing_key.clone(),
        registry: crate::args::registry_options(&args.registry)?,
        delta: match (&args.delta_from, &args.have_list) {
            (Some(old), _) => Some(DeltaSource::from_bundle(old)?),
            (None, Some(list)) => Some(DeltaSource::from_have_list(list)?),
            (None, None) => None,
        },
    };
    if let Some(delta) = &options.delta {
        crate::progress::for_format(args.format).line(&format!(
            "delta bundle: what the release shares with {1} ({0} digests) is left out",
            delta.have.len(),
            delta.base
        ));
    }
    let summary = tokio::select! {
        summary = create(&inputs, &options, crate::progress::for_format(args.format)) => summary?,
        // Stop the downloads but keep the partial bundle and its journal for the next run.
        Ok(()) = tokio::signal::ctrl_c() => anyhow::bail!(
            "interrupted; {} and its journal are kept: run the same command again to continue",
            options.bundle_output().partial_label().display()
        ),
    };
    match args.format {
        OutputFormat::Json => super::print_json(&summary),
        OutputFormat::Text => {
            println!(
                "wrote {}{}: {} images, {} charts, {} blobs ({}){}; downloaded {}, {} blobs from the cache, in {:.1}s{}",
                summary.output,
                match summary.parts.split_last() {
                    Some((index, parts)) => format!(
                        " in {} parts ({} to {}) with the index {index}",
                        parts.len(),
                        parts.first().map_or("", String::as_str),
                        parts.last().map_or("", String::as_str)
                    ),
                    None => String::new(),
                },
                summary.images,
                summary.charts,
                summary.blobs,
                human_bytes(summary.unique_bytes),
                [
                    (summary.referrers, "signatures/attestations/SBOMs"),
                    (summary.omitted_blobs, "left out (delta)"),
                ]
                .iter()
                .filter(|(count, _)| *count > 0)
                .map(|(count, what)| format!(", {count} {what}"))
                .collect::<String>(),
                human_bytes(summary.downloaded_bytes),
                summary.cached_blobs,
                summary.seconds,
                summary
                    .signed_by
                    .as_deref()
                    .map(|key| format!("; signed by {key}"))
                    .unwrap_or_default(),
            );
            Ok(())
        }
    }
}
