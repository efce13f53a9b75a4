//! `coder-install allowlist generate|audit`: what a restricted site must allow, and whether its
//! allowlist does.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use coder_bundle_spec::ImageLock;

use crate::args::{InputArgs, RegistryAccessArgs};
use crate::args::{LoadedLock, LockNeed, load_spec, read_lock, registry_options};
use coder_allowlist::endpoints::{RequirementInputs, required};
use coder_allowlist::probe::ProbeOptions;
use coder_allowlist::report::InputDigest;
use coder_allowlist::{self as allowlist, Allowlist, AuditRequest, render};
use coder_registry::sha256_digest;
use coder_units::parse_duration;

/// `coder-install allowlist ...`.
#[derive(Debug, clap::Args)]
pub struct AllowlistArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AllowlistCommand,
}

/// The `allowlist` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AllowlistCommand {
    /// List every endpoint a connected install needs, and the in-cluster flows.
    ///
    /// For each endpoint: host, port, scheme, role (registry API, token service, blob storage),
    /// which images need it, and whether it is fixed or a redirect target. With --probe, asks
    /// each registry where it sends a real blob download, and lists those hosts too.
    Generate(GenerateArgs),
    /// Check a site's allowlist against what the install needs, and write a report.
    ///
    /// The allowlist has one entry a line (`#` comments): a host name, `*.domain`, a URL
    /// (scheme, host, port, path prefix), an IP address or a CIDR network; or a YAML or JSON
    /// list of them. Exits 0 when everything needed is covered (and, with --probe, reachable),
    /// 30 when not, and 1 when the audit could not run.
    Audit(AuditArgs),
}

/// `allowlist generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Spec and lock.
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: GenerateFormat,
    /// Probing.
    #[command(flatten)]
    pub probe: ProbeArgs,
}

/// How `generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenerateFormat {
    /// Tables, for people.
    Text,
    /// JSON, for scripts.
    Json,
    /// YAML, for configuration repositories.
    Yaml,
}

/// `allowlist audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The site's allowlist file.
    #[arg(long, value_name = "FILE")]
    pub allowlist: PathBuf,
    /// Spec and lock.
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Write the report to this file instead of stdout (the summary line still goes to stdout).
    #[arg(short = 'o', long = "out", value_name = "REPORT")]
    pub out: Option<PathBuf>,
    /// Probing.
    #[command(flatten)]
    pub probe: ProbeArgs,
}

/// The formats of the audit report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Plain text.
    Text,
    /// JSON (the report's typed structure).
    Json,
    /// Markdown.
    Markdown,
    /// One self-contained HTML file.
    Html,
}

/// Probing from this host.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Resolve, connect to, TLS-handshake with and (registries) request `/v2/` from every
    /// endpoint, and learn where registries redirect blob downloads.
    #[arg(long)]
    pub probe: bool,
    /// The timeout of each probe step (resolve, connect, handshake, request).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub probe_timeout: Duration,
    /// The deadline of all probes together.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub probe_deadline: Duration,
    /// Registry access (plain-HTTP registries, extra CAs; these CAs are trusted by every probe).
    #[command(flatten)]
    pub registry: RegistryAccessArgs,
}

impl ProbeArgs {
    fn options(&self) -> anyhow::Result<Option<ProbeOptions>> {
        if !self.probe {
            return Ok(None);
        }
        Ok(Some(ProbeOptions {
            step_timeout: self.probe_timeout,
            deadline: self.probe_deadline,
            registry: registry_options(&self.registry)?,
        }))
    }
}

/// The audit ran and the allowlist does not let the install reach what it needs.
#[derive(Debug, thiserror::Error)]
#[error("the allowlist audit failed: {summary}")]
pub struct AuditFailed {
    /// The summary line.
    pub summary: String,
}

impl AuditFailed {
    /// The exit code of a failed audit.
    pub const EXIT_CODE: u8 = 30;
}

/// Runs an `allowlist` subcommand.
pub async fn run(args: AllowlistArgs) -> anyhow::Result<()> {
    match args.command {
        AllowlistCommand::Generate(args) => generate(args).await,
        AllowlistCommand::Audit(args) => audit(args).await,
    }
}

/// The spec and a lock: `--lock`, `images.lock` beside `--spec` if there is one, the built-in
/// lock with the built-in spec, or none (registries are then asked by tag when probing).
struct Inputs {
    spec: coder_bundle_spec::BundleSpec,
    spec_source: String,
    spec_text: String,
    lock: ImageLock,
    lock_source: Option<(String, String)>,
}

fn load(args: &InputArgs) -> anyhow::Result<Inputs> {
    let (spec, spec_text, spec_dir) = load_spec(args.spec.as_deref())?;
    let loaded = read_lock(args.lock.as_deref(), spec_dir.as_deref(), LockNeed::Optional)?;
    let (lock, lock_source) = match loaded {
        Some(LoadedLock { lock, text, source }) => (lock, Some((source, sha256_digest(text.as_bytes())))),
        None => (
            ImageLock {
                version: coder_bundle_spec::LOCK_FORMAT_VERSION,
                spec: coder_bundle_spec::LockedSpec {
                    name: spec.name.clone(),
                    version: spec.version.clone(),
                    signatures: spec.signatures,
                },
                locked_at: jiff::Timestamp::UNIX_EPOCH,
                images: Vec::new(),
                charts: Vec::new(),
            },
            None,
        ),
    };
    Ok(Inputs {
        spec_source: args
            .spec
            .as_ref()
            .map_or_else(|| "built-in spec".to_owned(), |path| path.display().to_string()),
        spec,
        spec_text,
        lock,
        lock_source,
    })
}

fn requirements(inputs: &Inputs, probe: &ProbeArgs) -> anyhow::Result<allowlist::Requirements> {
    Ok(required(RequirementInputs {
        spec: &inputs.spec,
        insecure_registries: &probe.registry.insecure_registries,
    })?)
}

async fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let inputs = load(&args.inputs)?;
    let mut requirements = requirements(&inputs, &args.probe)?;
    if let Some(options) = args.probe.options()? {
        if args.output == GenerateFormat::Text {
            eprintln!("asking each registry where it sends blob downloads ...");
        }
        requirements = allowlist::learn(requirements, &inputs.spec, &inputs.lock, options).await?;
    }
    match args.output {
        GenerateFormat::Text => print!("{}", render::requirements_text(&requirements)),
        GenerateFormat::Json => super::print_json(&requirements)?,
        GenerateFormat::Yaml => print!("{}", serde_saphyr::to_string(&requirements)?),
    }
    Ok(())
}

async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.allowlist)
        .with_context(|| format!("reading the allowlist {}", args.allowlist.display()))?;
    let text = String::from_utf8(bytes).map_err(|error| {
        anyhow::anyhow!(
            "the allowlist {} is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
            args.allowlist.display(),
            error.utf8_error().valid_up_to()
        )
    })?;
    let inputs = load(&args.inputs)?;
    let requirements = requirements(&inputs, &args.probe)?;
    let allowlist = Allowlist::parse(&text);

    let mut digests = vec![
        InputDigest {
            role: "allowlist".to_owned(),
            source: args.allowlist.display().to_string(),
            digest: sha256_digest(text.as_bytes()),
        },
        InputDigest {
            role: "spec".to_owned(),
            source: inputs.spec_source.clone(),
            digest: sha256_digest(inputs.spec_text.as_bytes()),
        },
    ];
    if let Some((source, digest)) = &inputs.lock_source {
        digests.push(InputDigest {
            role: "lock".to_owned(),
            source: source.clone(),
            digest: digest.clone(),
        });
    }
    let probe = args.probe.options()?;
    if let Some(options) = &probe {
        eprintln!(
            "probing {} endpoints from this host ({} a step, {} in all) ...",
            requirements.endpoints.len(),
            allowlist::format_duration(options.step_timeout),
            allowlist::format_duration(options.deadline)
        );
    }
    let report = allowlist::audit(AuditRequest {
        allowlist: &allowlist,
        requirements,
        inputs: digests,
        probe,
        spec: &inputs.spec,
        lock: &inputs.lock,
    })
    .await?;

    let rendered = match args.format {
        ReportFormat::Text => render::text(&report),
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        ReportFormat::Markdown => render::markdown(&report),
        ReportFormat::Html => render::html(&report),
    };
    let summary = report.summary.line(report.probed);
    let verdict = if report.verdict.passed { "PASS" } else { "FAIL" };
    match &args.out {
        Some(path) => {
            coder_bundle::write::write_file(path, rendered.as_bytes())?;
            println!("{verdict}: {summary} (report: {})", path.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(rendered.as_bytes())?;
            stdout.flush()?;
        }
    }
    if report.verdict.passed {
        Ok(())
    } else {
        Err(AuditFailed { summary }.into())
    }
}
