//! `coder-install inspect`.

use std::path::PathBuf;

use crate::args::OutputFormat;
use coder_bundle::read::inspect::inspect_bundle;
use coder_progress::human_bytes;

/// `coder-install inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The bundle file; for a split bundle, its index, any part, or the name they share.
    pub bundle: PathBuf,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Prints what a bundle holds.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let inspection = inspect_bundle(&args.bundle)?;
    if args.format == OutputFormat::Json {
        return super::print_json(&inspection);
    }
    let manifest = &inspection.manifest;
    println!(
        "{} {} (bundle format {}, made by {}, content of {})",
        manifest.name, manifest.version, manifest.format_version, manifest.tool, manifest.created
    );
    println!(
        "signed: {}",
        if inspection.signed {
            "yes (run verify --public-key to check)"
        } else {
            "no"
        }
    );
    if let Some(split) = &inspection.split {
        println!(
            "split: {} parts of {} ({} to {}), {} in all",
            split.parts.len(),
            human_bytes(split.part_size),
            split.parts.first().map_or("", |part| part.file.as_str()),
            split.parts.last().map_or("", |part| part.file.as_str()),
            human_bytes(split.bundle_size)
        );
    }
    if let Some(delta) = &manifest.delta {
        println!(
            "delta bundle: {} blobs left out, expected at the target from {}",
            delta.omitted.len(),
            delta.base
        );
    }
    println!("images:");
    for image in &manifest.images {
        let platforms: Vec<&str> = image.platforms.iter().map(|p| p.platform.as_str()).collect();
        println!(
            "  {:<24} {}\n  {:<24} {} {}{}",
            image.name,
            image.reference,
            "",
            image.digest,
            human_bytes(image.size),
            if platforms.is_empty() {
                String::new()
            } else {
                format!(" [{}]", platforms.join(", "))
            }
        );
        for referrer in &image.referrers {
            println!(
                "  {:<24} {:?} {} of {}",
                "",
                referrer.kind,
                referrer.tag.as_deref().unwrap_or(&referrer.digest),
                referrer.subject
            );
        }
    }
    println!("charts:");
    for chart in &manifest.charts {
        println!(
            "  {:<24} {} {}",
            chart.name,
            chart.reference,
            human_bytes(chart.size)
        );
    }
    println!(
        "total: {} in {} unique blobs ({} if nothing were shared; sharing saves {})",
        human_bytes(manifest.total_size),
        manifest.blobs.len(),
        human_bytes(inspection.sum_of_artifact_sizes),
        human_bytes(inspection.shared_savings)
    );
    Ok(())
}
