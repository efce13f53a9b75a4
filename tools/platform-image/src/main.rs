//! `platform-image`: the vendor-side tool that turns a built `coder-service` binary into the
//! platform's OCI image (no container engine needed) and writes it as an OCI layout or pushes
//! it to a registry. `scripts/build-platform-image.sh` builds the static binary and calls it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use coder_registry::Credentials;
use platform_image::elf::Linkage;
use platform_image::image::{self, ImageInputs};
use platform_image::push::PushTarget;
use platform_image::{layout, push};
use serde_json::json;

/// Build the Coder platform's container image from a coder-service binary (vendor side).
#[derive(Debug, Parser)]
#[command(name = "platform-image", version)]
struct Cli {
    #[command(subcommand)]
    command: CommandLine,
}

#[derive(Debug, Subcommand)]
enum CommandLine {
    /// Build the image (one layer: the binary at /usr/local/bin/coder-service, CA certificates,
    /// a non-root user 65532:65532, /tmp), write it as an OCI layout and/or push it, and print
    /// its digest. The same inputs always give the same digest.
    Build(BuildArgs),
}

/// The arguments of `build`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("destination").required(true).multiple(true).args(["oci_layout", "push"]))]
struct BuildArgs {
    /// The coder-service executable. Prefer a static one (scripts/build-platform-image.sh builds
    /// it); a dynamic one gets the shared libraries and loader `ldd` lists copied in.
    #[arg(long, value_name = "PATH")]
    binary: PathBuf,
    /// org.opencontainers.image.version [default: what `BINARY --version` prints].
    #[arg(long = "version", value_name = "V")]
    image_version: Option<String>,
    /// org.opencontainers.image.revision [default: `git rev-parse HEAD` here, none outside git].
    #[arg(long, value_name = "COMMIT")]
    revision: Option<String>,
    /// org.opencontainers.image.source [default: `git remote get-url origin`, none without one].
    #[arg(long, value_name = "URL")]
    source: Option<String>,
    /// Timestamp of every file and of the config's `created` (Unix seconds)
    /// [default: the HEAD commit's time, 0 outside git].
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "N")]
    source_date_epoch: Option<i64>,
    /// The CA bundle (PEM) copied to /etc/ssl/certs/ca-certificates.crt.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/ssl/certs/ca-certificates.crt"
    )]
    ca_certificates: PathBuf,
    /// Write the image as an OCI image layout into DIR (new, empty, or an existing layout).
    #[arg(long, value_name = "DIR")]
    oci_layout: Option<PathBuf>,
    /// Push the image to REF (registry/repository:tag), e.g. 127.0.0.1:5000/coderenvs/coder-service:1.0.0.
    #[arg(long, value_name = "REF")]
    push: Option<String>,
    /// Reach the push registry (`host[:port]`) over plain HTTP. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Trust this CA certificate (PEM) for the push registry, beside the system's. Repeatable.
    /// Credentials come from the Docker config unless --username is given.
    #[arg(long = "registry-ca", value_name = "FILE")]
    registry_ca: Vec<PathBuf>,
    /// User name for the push registry (with --password-stdin).
    #[arg(long, requires = "password_stdin", value_name = "USER")]
    username: Option<String>,
    /// Read the push registry's password from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Output format: the digest alone (text) or a JSON report.
    #[arg(long = "output", value_enum, default_value = "text")]
    format: OutputFormat,
}

/// What `build` prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// The image's digest alone, with the build's summary on stderr.
    Text,
    /// One JSON report, and nothing on stderr.
    Json,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        CommandLine::Build(args) => build(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", coder_progress::error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `build`: checks the inputs, builds the image, writes it as an OCI layout and/or pushes it,
/// and prints its digest (or the JSON report).
fn build(args: &BuildArgs) -> anyhow::Result<()> {
    // Check the cheap inputs before the minutes of work.
    let push_target = match &args.push {
        Some(reference) => Some(push_target(args, reference)?),
        None => None,
    };
    let inputs = image_inputs(args)?;
    let started = std::time::Instant::now();
    let image = image::build(&inputs)?;
    let quiet = args.format == OutputFormat::Json;
    if !quiet {
        print_built(&image, started.elapsed());
    }
    if let Some(dir) = &args.oci_layout {
        write_layout(dir, &image, push_target.as_ref(), &inputs.version, quiet)?;
    }
    if let Some(target) = &push_target {
        push_image(&image, target, quiet)?;
    }
    if quiet {
        print_report(args, &image, &inputs)?;
    } else {
        println!("{}", image.digest());
    }
    Ok(())
}

/// The image's inputs: the binary, the CA bundle (refused without a PEM certificate), the
/// version (the binary's own by default), and the revision, source and timestamp (from git by
/// default).
fn image_inputs(args: &BuildArgs) -> anyhow::Result<ImageInputs> {
    let binary = std::fs::read(&args.binary)
        .with_context(|| format!("--binary {}: cannot read it", args.binary.display()))?;
    let ca_certificates = std::fs::read(&args.ca_certificates).with_context(|| {
        format!(
            "--ca-certificates {}: cannot read it",
            args.ca_certificates.display()
        )
    })?;
    if !String::from_utf8_lossy(&ca_certificates).contains("-----BEGIN CERTIFICATE-----") {
        bail!(
            "--ca-certificates {}: no PEM certificate in it",
            args.ca_certificates.display()
        );
    }
    let version = match &args.image_version {
        Some(version) => version.clone(),
        None => version_of(&args.binary)?,
    };
    Ok(ImageInputs {
        binary,
        binary_path: args.binary.clone(),
        ca_certificates,
        version,
        revision: args.revision.clone().or_else(|| git(&["rev-parse", "HEAD"])),
        source: args
            .source
            .clone()
            .or_else(|| git(&["remote", "get-url", "origin"])),
        source_date_epoch: match args.source_date_epoch {
            Some(epoch) => epoch,
            None => git(&["log", "-1", "--format=%ct"])
                .and_then(|time| time.parse().ok())
                .unwrap_or(0),
        },
    })
}

/// Prints the build's summary on stderr: digest, architecture, linkage, layer sizes, time, and
/// the shared libraries copied in for a dynamic binary.
fn print_built(image: &image::Image, took: std::time::Duration) {
    eprintln!(
        "built {} ({}, {} binary, layer {} bytes compressed, {} uncompressed) in {:.1?}",
        image.digest(),
        image.architecture,
        linkage_name(&image.linkage),
        image.layer.data.len(),
        image.uncompressed_layer_size,
        took
    );
    if !image.shared_libraries.is_empty() {
        eprintln!(
            "the binary is dynamically linked: copied what ldd lists ({} files, the loader included)",
            image.shared_libraries.len()
        );
    }
}

/// Writes the image as an OCI layout into `dir`, named by the push reference's tag (else the
/// version), and says so unless `quiet`.
fn write_layout(
    dir: &Path,
    image: &image::Image,
    push_target: Option<&PushTarget>,
    version: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let ref_name = push_target
        .and_then(|target| target.reference.tag.clone())
        .unwrap_or_else(|| version.to_owned());
    layout::write(dir, image, &ref_name)?;
    if !quiet {
        eprintln!(
            "wrote the OCI layout {} (oci:{}:{ref_name})",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Pushes the image to `target` (on a runtime of its own), and says so unless `quiet`.
fn push_image(image: &image::Image, target: &PushTarget, quiet: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(push::push(image, target))?;
    if !quiet {
        eprintln!("pushed {}@{}", target.reference.original, image.digest());
    }
    Ok(())
}

/// Prints the JSON report of `--output json` on stdout.
fn print_report(args: &BuildArgs, image: &image::Image, inputs: &ImageInputs) -> anyhow::Result<()> {
    let report = json!({
        "digest": image.digest(),
        "pushed": args.push,
        "oci_layout": args.oci_layout,
        "architecture": image.architecture,
        "linkage": linkage_name(&image.linkage),
        "shared_libraries": image.shared_libraries,
        "version": inputs.version,
        "revision": inputs.revision,
        "source_date_epoch": inputs.source_date_epoch,
        "config_digest": image.config.digest,
        "layer": {
            "digest": image.layer.digest,
            "size": image.layer.data.len(),
            "uncompressed_size": image.uncompressed_layer_size,
        },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn push_target(args: &BuildArgs, reference: &str) -> anyhow::Result<PushTarget> {
    let reference = PushTarget::parse_reference(reference)?;
    let explicit = match &args.username {
        Some(username) => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            if password.is_empty() {
                bail!("--password-stdin: standard input was empty");
            }
            Some(Credentials {
                username: username.clone(),
                password,
            })
        }
        None => None,
    };
    Ok(PushTarget {
        credentials: PushTarget::credentials_for(&reference, explicit)?,
        reference,
        insecure_registries: args.insecure_registries.clone(),
        ca_files: args.registry_ca.clone(),
    })
}

fn linkage_name(linkage: &Linkage) -> &'static str {
    match linkage {
        Linkage::Static => "static",
        Linkage::Dynamic { .. } => "dynamic",
    }
}

/// The last word of `BINARY --version` (clap prints `coder-service 0.1.0`).
fn version_of(binary: &Path) -> anyhow::Result<String> {
    let output = Command::new(binary).arg("--version").output().with_context(|| {
        format!(
            "running {} --version (pass --version V instead)",
            binary.display()
        )
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.split_whitespace().last() {
        Some(version) if output.status.success() => Ok(version.to_owned()),
        _ => bail!(
            "{} --version printed no version (pass --version V instead)",
            binary.display()
        ),
    }
}

/// The trimmed output of a git command in the current directory, if it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}
