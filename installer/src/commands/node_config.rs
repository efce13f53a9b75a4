//! `coder-install node-config`: the container runtime configuration that lets the cluster's
//! nodes pull from the site registry (or from `serve`).

use std::path::PathBuf;

use crate::args::OutputFormat;
use coder_mirror::SiteRegistry;
use coder_mirror::node_config::{CONFIG_DIR, NodeConfigError, NodeConfigRequest, node_config};

/// `coder-install node-config`.
#[derive(Debug, clap::Args)]
pub struct NodeConfigArgs {
    /// The site registry (or `serve`) the nodes pull from, with the prefix the images were
    /// pushed (or are served) under.
    #[arg(long, value_name = crate::args::SITE_REGISTRY_VALUE)]
    pub registry: SiteRegistry,
    /// The CA certificate (PEM) that issued the registry's certificate, when the nodes do not
    /// trust it already: written beside each hosts.toml as `ca.crt`.
    #[arg(long = "registry-ca", value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
    /// The registry speaks plain HTTP.
    #[arg(long, conflicts_with = "registry_ca")]
    pub plain_http: bool,
    /// An upstream registry (`docker.io`, `registry.k8s.io`, `HOST:PORT`) whose image names the
    /// nodes resolve at the site registry instead, under its prefix. Repeatable. Default: the
    /// registries of the spec's images.
    #[arg(long = "mirror-of", value_name = "UPSTREAM")]
    pub mirror_of: Vec<String>,
    /// The bundle spec whose images' registries are mirrored when no --mirror-of is given.
    /// Default: the built-in spec.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// The folder to write (`certs.d/` for containerd's config_path, and a README.md).
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// Output format.
    #[arg(long = "output", value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Writes the files (each whole or not at all) and says what to do with them.
pub fn run(args: &NodeConfigArgs) -> anyhow::Result<()> {
    let ca_pem = match &args.registry_ca {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|error| anyhow::anyhow!("reading --registry-ca {}: {error}", path.display()))?,
        ),
        None => None,
    };
    let mirror_of = if args.mirror_of.is_empty() {
        let (spec, _, _) = crate::args::load_spec(args.spec.as_deref())?;
        let mut registries: Vec<String> = Vec::new();
        for image in &spec.images {
            let registry = coder_bundle_spec::ImageReference::parse(&image.reference)?.registry;
            if !registries.contains(&registry) {
                registries.push(registry);
            }
        }
        registries
    } else {
        args.mirror_of.clone()
    };
    let request = NodeConfigRequest {
        site: args.registry.clone(),
        plain_http: args.plain_http,
        ca_pem,
        mirror_of,
    };
    let files = node_config(&request).map_err(|error| match (&error, &args.registry_ca) {
        (NodeConfigError::BadCa, Some(path)) => anyhow::anyhow!("--registry-ca {}: {error}", path.display()),
        _ => error.into(),
    })?;
    for file in &files {
        let path = args.out.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| anyhow::anyhow!("creating {}: {error}", parent.display()))?;
        }
        coder_bundle::write::write_file(&path, file.contents.as_bytes())?;
    }
    match args.format {
        OutputFormat::Json => {
            let document = serde_json::json!({
                "registry": request.site.to_string(),
                "out": args.out.display().to_string(),
                "config_dir": args.out.join(CONFIG_DIR).display().to_string(),
                "mirror_of": request.mirror_of,
                "files": files.iter().map(|file| &file.path).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        OutputFormat::Text => {
            for file in &files {
                println!("wrote {}", args.out.join(&file.path).display());
            }
            println!(
                "copy {}/. to every node's containerd config_path (usually /etc/containerd/certs.d/); {} says how",
                args.out.join(CONFIG_DIR).display(),
                args.out.join("README.md").display()
            );
        }
    }
    Ok(())
}
