//! `coder-install verify`.

use std::path::PathBuf;

use crate::args::OutputFormat;
use coder_bundle::read::image_signatures::{ImageSignatureVerdict, check_image_signatures, read_image_key};
use coder_bundle::read::verify::{SignatureStatus, VerifyReport, verify_reported};
use coder_bundle::read::{BundleReader, OpenedBundle};
use coder_bundle::signing::{fingerprint, read_public_key};
use coder_progress::human_bytes;

/// `coder-install verify`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("signature_check").required(true).args(["public_key", "allow_unsigned"])))]
pub struct VerifyArgs {
    /// The bundle file; for a split bundle, its index, any part, or the name they share.
    pub bundle: PathBuf,
    /// Whose signatures the bundle and its images must carry. With --image-key, verify says per
    /// image: signed by the key, unsigned, or bad, and fails unless every image is signed.
    #[command(flatten)]
    pub trust: crate::args::BundleTrustArgs,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Verifies a bundle, prints the report, and fails if anything is wrong.
pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    // clap requires one of --public-key and --allow-unsigned.
    let key = args
        .trust
        .public_key
        .as_deref()
        .map(read_public_key)
        .transpose()?;
    let image_keys = args
        .trust
        .image_keys
        .iter()
        .map(|path| read_image_key(path))
        .collect::<Result<Vec<_>, _>>()?;
    let verifying = key;
    let progress = crate::progress::for_format(args.format);
    let bundle = args.bundle.clone();
    let report = tokio::task::spawn_blocking(move || {
        let reader = BundleReader::open(&bundle)?;
        let job = progress.job("verifying", reader.file().len());
        let mut report = verify_reported(&reader, verifying.as_ref(), job.as_ref())?;
        if !image_keys.is_empty() {
            // The same reader, its manifest pinned to what was just verified.
            let opened = OpenedBundle::from_reader(reader, Some(&report.manifest_digest))?;
            report.image_signatures = Some(check_image_signatures(
                opened.reader(),
                opened.manifest(),
                &image_keys,
            ));
        }
        Ok::<_, coder_bundle::BundleError>(report)
    })
    .await??;
    match args.format {
        OutputFormat::Json => super::print_json(&report)?,
        OutputFormat::Text => print_text(&report, || key.as_ref().map(fingerprint)),
    }
    if report.passes(args.trust.allow_unsigned_images) {
        Ok(())
    } else {
        Err(failure(&report, args.trust.allow_unsigned_images))
    }
}

/// The report for people: the bundle, its signature (`key_fingerprint`: that of the public key
/// given), per artifact its verdict, the problems.
fn print_text(report: &VerifyReport, key_fingerprint: impl FnOnce() -> Option<String>) {
    println!(
        "{} {} ({}): {} blobs, {} hashed",
        report.name,
        report.version,
        report.bundle,
        report.blobs_checked,
        human_bytes(report.bytes_checked)
    );
    if let (Some(first), Some(last)) = (report.parts.first(), report.parts.last()) {
        println!(
            "read in place from {} parts: {first} to {last}",
            report.parts.len()
        );
    }
    println!(
        "signature: {}",
        signature_text(&report.signature, key_fingerprint)
    );
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
    print_image_signatures(report);
}

/// What the signature check found, for people (with the key's fingerprint, asked only when
/// verified).
fn signature_text(signature: &SignatureStatus, key_fingerprint: impl FnOnce() -> Option<String>) -> String {
    match signature {
        SignatureStatus::Verified => match key_fingerprint() {
            Some(fingerprint) => format!("verified (key {fingerprint})"),
            None => "verified".to_owned(),
        },
        SignatureStatus::NotChecked => {
            "present, NOT checked (--allow-unsigned; pass --public-key to check it)".to_owned()
        }
        SignatureStatus::Unsigned => "none, NOT checked (--allow-unsigned)".to_owned(),
        SignatureStatus::Invalid(reason) => format!("INVALID: {reason}"),
    }
}

/// The error of a bundle that fails verification: how many problems, the bad signature, and the
/// images not signed by the image key(s).
fn failure(report: &VerifyReport, allow_unsigned_images: bool) -> anyhow::Error {
    let refused_images = report.images_not_signed(allow_unsigned_images);
    let not_signed: Vec<String> = refused_images
        .iter()
        .map(|image| format!("{} ({})", image.name, image.verdict.as_str()))
        .collect();
    anyhow::anyhow!(
        "{} failed verification: {} problem(s){}{}",
        report.bundle,
        report.problems.len(),
        match &report.signature {
            SignatureStatus::Invalid(reason) => format!("; signature: {reason}"),
            _ => String::new(),
        },
        if not_signed.is_empty() {
            String::new()
        } else {
            format!(
                "; images not signed by the image key(s): {}",
                not_signed.join(", ")
            )
        }
    )
}

/// The per-image verdicts of `--image-key`, for people.
fn print_image_signatures(report: &VerifyReport) {
    let Some(images) = &report.image_signatures else {
        return;
    };
    println!("image signatures (cosign):");
    for image in images {
        let verdict = match image.verdict {
            ImageSignatureVerdict::Signed => format!(
                "signed by {} ({})",
                image.signed_by.join(", "),
                image.signed_digests.join(", ")
            ),
            ImageSignatureVerdict::Unsigned => "UNSIGNED".to_owned(),
            ImageSignatureVerdict::Bad => "BAD".to_owned(),
        };
        println!("  {:<28} {verdict}", image.reference);
        for problem in &image.problems {
            println!("      {problem}");
        }
    }
}
