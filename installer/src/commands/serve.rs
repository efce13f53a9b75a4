//! `coder-install serve`: a bundle as a read-only OCI registry, for sites without a registry.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::args::OutputFormat;
use coder_deploy::apply::{SignaturePolicy, verify_before_use, verify_signature_before_use};
use coder_progress::human_bytes;
use coder_serve::{ServeLimits, ServeOptions, ServedBundle};

/// What a refusal at start leaves undone.
const NOTHING_SERVED: &str = "nothing was served";

/// `coder-install serve`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("signature_check").required(true).args(["public_key", "allow_unsigned"])))]
pub struct ServeArgs {
    /// The bundle file; for a split bundle, its index, any part, or the name they share.
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,
    /// The address to listen on. Cluster nodes must reach it (and trust its certificate, or
    /// be configured for a plain-HTTP registry).
    #[arg(long, value_name = "HOST:PORT", default_value = "0.0.0.0:5000")]
    pub listen: String,
    /// Serve every repository under this path prefix, as `push --registry HOST/PREFIX` places
    /// it: `PREFIX/<original repository path>`. Give `apply --registry HOST:PORT/PREFIX` the same.
    /// Default: none (the original repository paths at the root).
    #[arg(long, value_name = "PREFIX", default_value = "", hide_default_value = true)]
    pub prefix: String,
    /// Serve HTTPS with this PEM certificate chain (server certificate first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require basic authentication by the users of this htpasswd file (bcrypt entries, as
    /// `htpasswd -B` writes them and the distribution registry reads them). Use with TLS.
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// Require a valid signature by this Ed25519 public key (SPKI PEM). One of this and
    /// --allow-unsigned is required; every blob is re-hashed before serving, as `verify` does,
    /// unless --verified-manifest is given.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Serve the bundle without checking its signature; the output says so.
    #[arg(long, conflicts_with = "public_key")]
    pub allow_unsigned: bool,
    /// Skip re-hashing the blobs at start (large bundles, restarts), trusting an earlier
    /// `coder-install verify` of this file: the `manifest` digest that verify printed. The
    /// bundle's manifest must still hash to it, or nothing is served; the signature is still
    /// checked as --public-key or --allow-unsigned says; blobs are not re-hashed (clients check
    /// each blob's digest as they pull it).
    #[arg(long, value_name = "SHA256")]
    pub verified_manifest: Option<String>,
    /// Connections served at once; more wait until one closes.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Drop a connection whose client has taken no bytes of an answer for this long (a
    /// download that stopped reading), e.g. 60s or 2m.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = coder_units::parse_nonzero_duration)]
    pub stall_timeout: Duration,
    /// Drop a connection that has sent no request for this long (an idle keep-alive connection,
    /// or a request head or TLS handshake that does not arrive), e.g. 30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = coder_units::parse_nonzero_duration)]
    pub idle_timeout: Duration,
    /// Output format: `json` prints one line of JSON on stdout once listening (address, what
    /// `apply --registry` takes, repositories, images), and one more when stopped (requests
    /// answered, bytes sent).
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Verifies the bundle, serves it until SIGINT or SIGTERM, and reports what it served.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let progress = crate::progress::for_format(args.format);
    let policy = match &args.public_key {
        Some(key) => SignaturePolicy::Key(key.clone()),
        None => SignaturePolicy::AllowUnsigned,
    };
    let verified = match &args.verified_manifest {
        Some(digest) => {
            verify_signature_before_use(&args.bundle, &policy, digest, NOTHING_SERVED, progress).await?
        }
        None => verify_before_use(&args.bundle, &policy, NOTHING_SERVED, progress).await?,
    };
    let signature = verified.signature.clone();
    let options = ServeOptions {
        prefix: args.prefix.clone(),
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        htpasswd: args.htpasswd.clone(),
        limits: ServeLimits {
            max_connections: args.max_connections as usize,
            idle_timeout: args.idle_timeout,
            stall_timeout: args.stall_timeout,
            ..ServeLimits::default()
        },
    };
    let served = ServedBundle::open(&verified.bundle, &options)?;
    let bound = served.bind(&args.listen).await?;
    let summary = bound.summary(&args.prefix);
    if summary.auth && !summary.tls {
        progress.warning("warning: --htpasswd without --tls-cert: passwords cross the network in clear text");
    }
    match args.format {
        OutputFormat::Json => {
            let mut document = serde_json::to_value(&summary)?;
            document["bundle"] = args.bundle.display().to_string().into();
            document["signature"] = signature.into();
            println!("{}", serde_json::to_string(&document)?);
        }
        OutputFormat::Text => {
            println!(
                "serving {} {} from {} at {} (read-only; signature {signature})",
                summary.name,
                summary.version,
                args.bundle.display(),
                summary.url
            );
            for artifact in &summary.artifacts {
                let place = match &artifact.tag {
                    Some(tag) => format!("{}:{tag}", artifact.repository),
                    None => artifact.repository.clone(),
                };
                println!("  {:<40} -> {place}@{}", artifact.reference, artifact.digest);
            }
            println!(
                "deploy from it: coder-install apply --bundle {} --registry {} --no-push ...\n\
                 (use an address the cluster's nodes reach; they pull from it for as long as the platform runs)",
                args.bundle.display(),
                summary.registry
            );
        }
    }
    let totals = bound.run(shutdown_signal(), progress).await;
    match args.format {
        OutputFormat::Json => {
            // A second line once stopped; the reader may have gone already, which is fine.
            let document = serde_json::json!({ "stopped": totals });
            let _ = writeln!(std::io::stdout(), "{document}");
        }
        OutputFormat::Text => progress.line(&format!(
            "stopped: {} requests answered ({} refused for credentials), {} of blobs sent",
            totals.requests,
            totals.unauthorized,
            human_bytes(totals.blob_bytes)
        )),
    }
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}
