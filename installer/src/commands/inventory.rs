//! `coder-install inventory`: what the site registry already holds, as the have-list that
//! `bundle --have-list` takes, so that an update carries only what the site lacks.

use std::path::PathBuf;

use crate::args::{ConcurrencyArgs, OutputFormat, RegistryLoginArgs};
use coder_bundle_spec::ChartSource;
use coder_mirror::SiteRegistry;
use coder_mirror::inventory::{site_repositories, take_inventory};
use coder_registry::RegistryClient;

/// `coder-install inventory`.
#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// The site registry (or `serve`), with the prefix the bundle was pushed (or is served)
    /// under.
    #[arg(long, value_name = crate::args::SITE_REGISTRY_VALUE)]
    pub registry: SiteRegistry,
    /// The bundle spec whose images and charts are looked for. Default: the built-in spec.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Where to write the have-list (one digest a line, after a header saying where and when).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: PathBuf,
    /// The site registry's credentials, plain HTTP and extra CAs.
    #[command(flatten)]
    pub login: RegistryLoginArgs,
    /// Repositories read at once.
    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Reads every tag's manifests of the spec's repositories at the site registry and writes the
/// digests they name.
pub async fn run(args: InventoryArgs) -> anyhow::Result<()> {
    let (spec, _, _) = crate::args::load_spec(args.spec.as_deref())?;
    let mut originals: Vec<String> = spec.images.iter().map(|image| image.reference.clone()).collect();
    for chart in &spec.charts {
        originals.push(match chart.source()? {
            // Bundles name a local chart `charts/<name>:<version>`; only the repository counts
            // here (every tag of it is read).
            ChartSource::Path(_) => format!("charts/{}:latest", chart.name),
            ChartSource::Oci(reference) => reference.to_string(),
        });
    }
    let repositories = site_repositories(&args.registry, &originals)?;
    let client = RegistryClient::new(args.login.resolve(Some(&args.registry))?.0)?;
    let progress = crate::progress::for_format(args.format);
    progress.step(&format!(
        "inventory of {} ({} repositories)",
        args.registry,
        repositories.len()
    ));
    let inventory = take_inventory(&client, &args.registry, &repositories, args.concurrency.get()).await?;
    coder_bundle::write::write_file(&args.out, inventory.have_list().as_bytes())?;
    match args.format {
        OutputFormat::Json => {
            let mut document = serde_json::to_value(&inventory)?;
            document["out"] = args.out.display().to_string().into();
            document["digests"] = inventory.digests.len().into();
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        OutputFormat::Text => {
            for repository in &inventory.repositories {
                match repository.tags.len() {
                    0 => println!("{:<60} not there", repository.repository),
                    tags => println!(
                        "{:<60} {tags} tags, {} manifests",
                        repository.repository, repository.manifests
                    ),
                }
            }
            println!(
                "wrote {}: {} digests held by {} at {}; make an update with `coder-install bundle --have-list {}`",
                args.out.display(),
                inventory.digests.len(),
                inventory.registry,
                inventory.taken_at,
                args.out.display()
            );
        }
    }
    Ok(())
}
