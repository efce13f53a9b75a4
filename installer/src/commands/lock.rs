//! `coder-install lock`.

use crate::cli::{LockArgs, OutputFormat};
use coder_registry::RegistryClient;

/// Resolves the spec's tags and writes the lock (atomically: a temporary file renamed into place).
pub async fn run(args: LockArgs) -> anyhow::Result<()> {
    let (spec, _, _) = super::load_spec(args.spec.as_deref())?;
    let client = RegistryClient::new(super::registry_options(&args.registry)?)?;
    let reporter = crate::report::for_format(args.format);
    let lock = coder_bundle::lock::resolve(&spec, &client, &|locked| {
        reporter.line(&format!(
            "locked {} {} -> {}",
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
