//! `coder-install lock`.

use std::path::PathBuf;

use crate::args::{OutputFormat, RegistryAccessArgs};
use coder_registry::RegistryClient;

/// `coder-install lock`.
#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// The bundle spec (YAML). Default: the built-in spec.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Where to write the lock.
    #[arg(short = 'o', long = "out", value_name = "FILE", default_value = "images.lock")]
    pub out: PathBuf,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryAccessArgs,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Resolves the spec's tags and writes the lock (atomically: a temporary file renamed into place).
pub async fn run(args: LockArgs) -> anyhow::Result<()> {
    let (spec, _, _) = crate::args::load_spec(args.spec.as_deref())?;
    let client = RegistryClient::new(crate::args::registry_options(&args.registry)?)?;
    let progress = crate::progress::for_format(args.format);
    let lock = coder_bundle::make::lock::resolve(&spec, &client, &|locked| {
        let referrers = match locked.referrers.len() {
            0 => String::new(),
            count => format!(" (+{count} signature/attestation/SBOM artifacts)"),
        };
        progress.line(&format!(
            "locked {} {} -> {}{referrers}",
            locked.name, locked.reference, locked.digest
        ));
    })
    .await?;
    let text = lock.to_yaml()?;
    coder_bundle::write::write_file(&args.out, text.as_bytes())?;
    match args.format {
        OutputFormat::Json => super::print_json(&lock),
        OutputFormat::Text => {
            println!(
                "wrote {} ({} images, {} charts)",
                args.out.display(),
                lock.images.len(),
                lock.charts.len()
            );
            Ok(())
        }
    }
}
