//! `coder-install bundle`.

use crate::cli::{BundleArgs, OutputFormat};
use coder_bundle::cache::BlobCache;
use coder_bundle::{BundleOptions, DeltaSource, create};
use coder_report::human_bytes;

/// Makes the bundle and prints a summary.
pub async fn run(args: BundleArgs) -> anyhow::Result<()> {
    let inputs = super::load_inputs(&args.inputs)?;
    let options = BundleOptions {
        output: args.out.clone(),
        force: args.force,
        cache_dir: args.cache.clone().unwrap_or_else(BlobCache::default_root),
        concurrency: args.concurrency.get(),
        signing_key: args.signing_key.clone(),
        registry: super::registry_options(&args.registry)?,
        delta: match (&args.delta_from, &args.have_list) {
            (Some(old), _) => Some(DeltaSource::from_bundle(old)?),
            (None, Some(list)) => Some(DeltaSource::from_have_list(list)?),
            (None, None) => None,
        },
    };
    let summary = tokio::select! {
        summary = create(&inputs, &options, crate::report::for_format(args.format)) => summary?,
        // Stop the downloads but keep the partial bundle and its journal for the next run.
        Ok(()) = tokio::signal::ctrl_c() => anyhow::bail!(
            "interrupted; {} and its journal are kept: run the same command again to continue",
            coder_bundle::write::partial_path(&options.output).display()
        ),
    };
    match args.format {
        OutputFormat::Json => super::print_json(&summary),
        OutputFormat::Text => {
            println!(
                "wrote {}: {} images, {} charts, {} blobs ({}){}; downloaded {}, {} blobs from the cache, in {:.1}s{}",
                summary.output,
                summary.images,
                summary.charts,
                summary.blobs,
                human_bytes(summary.unique_bytes),
                if summary.omitted_blobs > 0 {
                    format!(", {} left out (delta)", summary.omitted_blobs)
                } else {
                    String::new()
                },
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
