//! `coder-install verify`.

use std::path::PathBuf;

use crate::args::OutputFormat;
use coder_bundle::signing::{fingerprint, read_public_key};
use coder_bundle::verify::{SignatureStatus, verify_bundle};
use coder_report::human_bytes;

/// `coder-install verify`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("signature_check").required(true).args(["public_key", "allow_unsigned"])))]
pub struct VerifyArgs {
    /// The bundle file.
    pub bundle: PathBuf,
    /// Require a valid signature by this Ed25519 public key (SPKI PEM). One of this and
    /// --allow-unsigned is required.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Check the bundle's contents without its signature (an unsigned bundle, or no vendor key
    /// at hand); the output says the signature was not checked.
    #[arg(long, conflicts_with = "public_key")]
    pub allow_unsigned: bool,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Verifies a bundle before it is used (`apply --bundle`, `serve`): `public_key` requires a
/// valid signature by it, none means `--allow-unsigned` was given. Fails listing every problem,
/// ending with `nothing_done` (what was not done because of it). Returns the verified manifest's
/// digest (to pin later reads to) and a line saying how the signature was checked.
pub(crate) async fn verify_before_use(
    bundle: &std::path::Path,
    public_key: Option<&std::path::Path>,
    reporter: &dyn coder_report::Reporter,
    nothing_done: &str,
) -> anyhow::Result<(String, String)> {
    reporter.step(&format!("verify {}", bundle.display()));
    let key = public_key.map(read_public_key).transpose()?;
    let signature = key.as_ref().map_or_else(
        || "NOT checked (--allow-unsigned)".to_owned(),
        |key| format!("verified with key {}", fingerprint(key)),
    );
    let path = bundle.to_owned();
    let report = tokio::task::spawn_blocking(move || verify_bundle(&path, key.as_ref(), &|_| {})).await??;
    if !report.ok() {
        let mut problems = report.problems.clone();
        if let SignatureStatus::Invalid(reason) = &report.signature {
            problems.push(format!("signature: {reason}"));
        }
        anyhow::bail!(
            "the bundle does not verify; {nothing_done}:\n  - {}",
            problems.join("\n  - ")
        );
    }
    reporter.line(&format!("    signature: {signature}"));
    Ok((report.manifest_digest, signature))
}

/// Verifies a bundle, prints the report, and fails if anything is wrong.
pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    // clap requires one of --public-key and --allow-unsigned.
    let key = args.public_key.as_deref().map(read_public_key).transpose()?;
    let verifying = key;
    let size = std::fs::metadata(&args.bundle)
        .map(|meta| meta.len())
        .unwrap_or(0);
    let reporter = crate::report::for_format(args.format);
    let bundle = args.bundle.clone();
    let report = tokio::task::spawn_blocking(move || {
        let progress = reporter.job("verifying", size);
        let item = progress.item("blobs", size);
        let report = verify_bundle(&bundle, verifying.as_ref(), &|done| item.set(done));
        drop(item);
        progress.finish();
        report
    })
    .await??;
    match args.format {
        OutputFormat::Json => super::print_json(&report)?,
        OutputFormat::Text => {
            println!(
                "{} {} ({}): {} blobs, {} hashed",
                report.name,
                report.version,
                report.bundle,
                report.blobs_checked,
                human_bytes(report.bytes_checked)
            );
            let signature = match &report.signature {
                SignatureStatus::Verified => match &key {
                    Some(key) => format!("verified (key {})", fingerprint(key)),
                    None => "verified".to_owned(),
                },
                SignatureStatus::NotChecked => {
                    "present, NOT checked (--allow-unsigned; pass --public-key to check it)".to_owned()
                }
                SignatureStatus::Unsigned => "none, NOT checked (--allow-unsigned)".to_owned(),
                SignatureStatus::Invalid(reason) => format!("INVALID: {reason}"),
            };
            println!("signature: {signature}");
            println!("manifest: {}", report.manifest_digest);
            for artifact in &report.artifacts {
                let verdict = if artifact.intact {
                    "ok".to_owned()
                } else {
                    format!("BROKEN (bad blobs: {})", artifact.bad_blobs.join(", "))
                };
                println!("  {:<28} {verdict}", artifact.reference);
            }
            for problem in &report.problems {
                println!("problem: {problem}");
            }
        }
    }
    if report.ok() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} failed verification: {} problem(s){}",
            report.bundle,
            report.problems.len(),
            match &report.signature {
                SignatureStatus::Invalid(reason) => format!("; signature: {reason}"),
                _ => String::new(),
            }
        )
    }
}
