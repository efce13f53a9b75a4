//! The flag groups that several subcommands share (output format, spec and lock, registry
//! access, concurrency, which release, whose signatures a bundle needs, values, cluster and
//! namespace, site registry login), each
//! with how it turns into the libraries' inputs. A subcommand's own flags live beside its `run`
//! in `commands`.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use coder_bundle_spec::{BundleSpec, DEFAULT_LOCK, DEFAULT_SPEC, ImageLock};

use coder_bundle::Inputs;
use coder_deploy::apply::{ImageSignaturePolicy, SignaturePolicy, VerifiedBundle, verify_before_use};
use coder_deploy::cluster::ClusterOptions;
use coder_deploy::release::ReleaseSource;
use coder_mirror::SiteRegistry;
use coder_registry::{CredentialStore, Credentials, RegistryOptions};

/// How `--registry` (the site registry: `apply`, `template`, `preflight`, `push`) is written.
pub const SITE_REGISTRY_VALUE: &str = "HOST[:PORT][/PREFIX]";

/// Which release: a bundle pushed to a site registry, or the spec and lock (connected).
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The offline bundle (air-gapped mode; for a split bundle, its index, any part, or the name
    /// they share). Without it: connected mode, images pulled from their original registries by
    /// the lock's digests.
    #[arg(long, value_name = "FILE", requires = "registry")]
    pub bundle: Option<PathBuf>,
    /// The site registry the bundle's images go to, with an optional path prefix: images go
    /// to PREFIX/<original repository path>.
    #[arg(long, value_name = SITE_REGISTRY_VALUE, requires = "bundle")]
    pub registry: Option<SiteRegistry>,
    /// Connected mode's spec and lock.
    #[command(flatten)]
    pub inputs: InputArgs,
}

impl ReleaseArgs {
    /// The release source these flags name.
    pub fn source(&self) -> anyhow::Result<ReleaseSource> {
        // clap requires --registry with --bundle and --bundle with --registry.
        match (&self.bundle, &self.registry) {
            (Some(path), Some(site)) => Ok(ReleaseSource::Bundle {
                path: path.clone(),
                site: site.clone(),
            }),
            _ => Ok(ReleaseSource::Connected(Box::new(load_inputs(&self.inputs)?))),
        }
    }
}

/// Whose signatures a bundle and its images must carry, for the commands that use a bundle
/// (`apply`, `push`, `template`): each verifies the bundle and pins its manifest before reading
/// anything else from it. Every flag needs `--bundle`.
#[derive(Debug, Clone, clap::Args)]
pub struct BundleTrustArgs {
    /// Require the bundle to be signed by this Ed25519 public key (SPKI PEM). With a bundle, one
    /// of this and --allow-unsigned is required.
    #[arg(long, value_name = "FILE", requires = "bundle")]
    pub public_key: Option<PathBuf>,
    /// Use the bundle without checking its signature (an unsigned bundle, or no vendor key at
    /// hand); the output (and an install's record) says so. Every blob is still hashed.
    #[arg(long, requires = "bundle", conflicts_with = "public_key")]
    pub allow_unsigned: bool,
    /// Also require the images' cosign signatures, checked offline with this ECDSA P-256 public
    /// key (cosign.pub, SPKI PEM); repeatable, a signature by any of them counts. A signature
    /// counts for the image's digest (or every carried platform's) and its repository. The
    /// bundle carries signatures when its spec says `signatures: true`.
    #[arg(long = "image-key", value_name = "FILE", requires = "bundle")]
    pub image_keys: Vec<PathBuf>,
    /// With --image-key, refuse only bad signatures: images that carry none (e.g. an upstream
    /// image its publisher does not sign) are accepted, and the output counts them.
    #[arg(long, requires = "image_keys")]
    pub allow_unsigned_images: bool,
}

impl BundleTrustArgs {
    /// The bundle's signature policy (unspecified: a bundle is refused, saying which flags).
    pub fn signature_policy(&self) -> SignaturePolicy {
        match (&self.public_key, self.allow_unsigned) {
            (Some(key), _) => SignaturePolicy::Key(key.clone()),
            (None, true) => SignaturePolicy::AllowUnsigned,
            (None, false) => SignaturePolicy::Unspecified,
        }
    }

    /// The images' signature policy.
    pub fn image_policy(&self) -> ImageSignaturePolicy {
        ImageSignaturePolicy {
            keys: self.image_keys.clone(),
            allow_unsigned_images: self.allow_unsigned_images,
        }
    }

    /// Verifies the bundle at `path` as these flags ask (every blob, its signature, and with
    /// --image-key its images' signatures) and opens it once for what follows; a refusal says
    /// `undone`.
    pub async fn verify(
        &self,
        path: &Path,
        undone: &'static str,
        progress: &dyn coder_progress::Progress,
    ) -> anyhow::Result<VerifiedBundle> {
        let mut verified = verify_before_use(path, &self.signature_policy(), undone, progress).await?;
        verified.require_image_signatures(&self.image_policy(), undone, progress)?;
        Ok(verified)
    }
}

/// Whether the site registry already holds the bundle (`apply` and `preflight`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct NoPushArgs {
    /// The site registry already holds this bundle's images: it is `coder-install serve` of the
    /// same bundle (for a site without a registry; give serve's `--prefix` in --registry), or
    /// they were pushed before. Check that every image and chart is there by digest instead of
    /// pushing; preflight checks that instead of whether the registry takes pushes.
    #[arg(long, requires = "bundle")]
    pub no_push: bool,
}

/// Chart values.
#[derive(Debug, clap::Args)]
pub struct ValuesArgs {
    /// A YAML values file; repeatable, later files win. Keys: charts/coder/values.yaml.
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Set one value, e.g. `--set manager.replicas=2`; repeatable, wins over files.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

/// Which cluster and namespace.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// The namespace the platform lives in.
    #[arg(short = 'n', long, default_value = "coder", value_name = "NAME")]
    pub namespace: String,
    /// The kubeconfig. Default: $KUBECONFIG, then ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context. Default: its current context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl TargetArgs {
    /// The cluster options.
    pub fn cluster(&self) -> ClusterOptions {
        ClusterOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }

    /// Checks the namespace name (DNS-1123 label).
    pub fn checked_namespace(&self) -> anyhow::Result<String> {
        let name = &self.namespace;
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            anyhow::bail!(
                "--namespace {name:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
            );
        }
        Ok(name.clone())
    }
}

/// Site registry login: one group for every command that talks to the site registry (`push`,
/// `apply`, `preflight`).
#[derive(Debug, clap::Args)]
pub struct RegistryLoginArgs {
    /// Username for the site registry (`apply` also makes the cluster's image pull Secret from
    /// it). Default: the Docker config's credentials for the registry, if any (then no pull
    /// Secret is made).
    #[arg(long, value_name = "USER", requires = "registry_password_stdin")]
    pub registry_username: Option<String>,
    /// Read the site registry's password (or token) from stdin.
    #[arg(long, requires = "registry_username")]
    pub registry_password_stdin: bool,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryAccessArgs,
}

impl RegistryLoginArgs {
    /// Registry options (flags, Docker config, and the credentials given here for `site`), and
    /// those credentials for the pull Secret. The password is read from stdin once.
    pub fn resolve(
        &self,
        site: Option<&SiteRegistry>,
    ) -> anyhow::Result<(RegistryOptions, Option<Credentials>)> {
        let mut options = registry_options(&self.registry)?;
        let Some(username) = &self.registry_username else {
            return Ok((options, None));
        };
        let credentials = Credentials {
            username: username.clone(),
            password: read_password_stdin()?,
        };
        if let Some(site) = site {
            options.credentials.insert(&site.host, credentials.clone());
        }
        Ok((options, Some(credentials)))
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document on stdout, for scripts; progress is not shown.
    Json,
}

/// Where the spec and lock come from.
#[derive(Debug, clap::Args)]
pub struct InputArgs {
    /// The bundle spec (YAML). Default: the spec built into this coder-install.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// The image lock. Default: `images.lock` beside `--spec`, or the built-in lock.
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
}

/// How to reach registries.
#[derive(Debug, clap::Args)]
pub struct RegistryAccessArgs {
    /// Reach this registry (`host[:port]`) over plain HTTP. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Trust this CA certificate (PEM) for registries, beside the system's. Repeatable.
    #[arg(long = "registry-ca", value_name = "FILE")]
    pub registry_ca: Vec<PathBuf>,
}

/// How blobs go up to the site registry (`push`, `apply`): whole, or in chunks.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ChunkArgs {
    /// Upload blobs in chunks of at most SIZE (`16Mi`, `512Ki`; `M` is 1000², `Mi` 1024²) as
    /// PATCH requests with Content-Range, for a site registry behind a proxy that caps request
    /// bodies (NGINX's client_max_body_size). Without it blobs go up whole, and the first one
    /// refused as too large (413) switches the rest of the run to chunks of 16 MiB, halved
    /// while they are refused.
    #[arg(long = "chunk-size", value_name = "SIZE", value_parser = parse_chunk_size)]
    pub size: Option<u64>,
}

impl ChunkArgs {
    /// Sets the chunk size of `options`.
    pub fn apply_to(self, options: &mut RegistryOptions) {
        options.upload_chunk_size = self.size;
    }
}

/// A chunk size: a size (see `coder_units::parse_size`) of at least the smallest chunk.
fn parse_chunk_size(text: &str) -> Result<u64, String> {
    let size = coder_units::parse_size(text)?;
    if size < coder_registry::SMALLEST_CHUNK {
        return Err(format!(
            "{size} bytes is under the smallest chunk, {} bytes (64Ki)",
            coder_registry::SMALLEST_CHUNK
        ));
    }
    Ok(size)
}

/// How many blobs move at once: the same flag, default and limits for `bundle` (downloads),
/// `push` and `apply` (uploads).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ConcurrencyArgs {
    /// Blobs downloaded or pushed at once (1 to 256).
    #[arg(long = "concurrency", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub value: u16,
}

impl ConcurrencyArgs {
    /// As a count of tasks.
    pub fn get(self) -> usize {
        usize::from(self.value)
    }
}

/// Loads the spec (a file or the built-in one).
pub fn load_spec(path: Option<&Path>) -> anyhow::Result<(BundleSpec, String, Option<PathBuf>)> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| anyhow::anyhow!("reading spec {}: {error}", path.display()))?;
            let spec = BundleSpec::from_yaml(&text, &path.display().to_string())?;
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            Ok((spec, text, Some(dir)))
        }
        None => Ok((
            BundleSpec::from_yaml(DEFAULT_SPEC, "built-in spec")?,
            DEFAULT_SPEC.to_owned(),
            None,
        )),
    }
}

/// Loads spec and lock as `bundle` and `apply` take them.
pub fn load_inputs(args: &InputArgs) -> anyhow::Result<Inputs> {
    let (spec, spec_text, spec_dir) = load_spec(args.spec.as_deref())?;
    let LoadedLock { lock, text, .. } =
        read_lock(args.lock.as_deref(), spec_dir.as_deref(), LockNeed::Required)?
            .ok_or_else(|| anyhow::anyhow!("no lock; run `coder-install lock` to make one"))?;
    Ok(Inputs {
        spec,
        spec_text,
        lock,
        lock_text: text,
        spec_dir,
    })
}

/// Whether a command can do without a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockNeed {
    /// A spec file needs `images.lock` beside it (or `--lock`).
    Required,
    /// A spec file without a lock beside it is fine.
    Optional,
}

/// A lock as read.
pub struct LoadedLock {
    /// The parsed lock.
    pub lock: ImageLock,
    /// Its exact text.
    pub text: String,
    /// Where it came from (a path, or `built-in lock`).
    pub source: String,
}

/// Reads the lock: `lock` if given, else `images.lock` in `spec_dir` (the spec file's folder),
/// else the built-in lock when the spec is the built-in one. `None` only for an optional lock
/// that is not there.
pub fn read_lock(
    lock: Option<&Path>,
    spec_dir: Option<&Path>,
    need: LockNeed,
) -> anyhow::Result<Option<LoadedLock>> {
    let path = lock.map(Path::to_path_buf).or_else(|| {
        spec_dir
            .map(|dir| dir.join("images.lock"))
            .filter(|path| need == LockNeed::Required || path.exists())
    });
    let (text, source) = match (&path, spec_dir) {
        (Some(path), _) => (
            std::fs::read_to_string(path).map_err(|error| {
                anyhow::anyhow!(
                    "reading lock {}: {error}; run `coder-install lock` to make it",
                    path.display()
                )
            })?,
            path.display().to_string(),
        ),
        (None, None) => (DEFAULT_LOCK.to_owned(), "built-in lock".to_owned()),
        (None, Some(_)) => return Ok(None),
    };
    Ok(Some(LoadedLock {
        lock: ImageLock::from_yaml(&text, &source)?,
        text,
        source,
    }))
}

/// Registry options from the flags and the Docker config.
pub fn registry_options(args: &RegistryAccessArgs) -> anyhow::Result<RegistryOptions> {
    Ok(RegistryOptions {
        insecure_registries: args.insecure_registries.clone(),
        ca_files: args.registry_ca.clone(),
        credentials: CredentialStore::from_docker_config()?,
        attempts: 4,
        redirects: Default::default(),
        progress: Default::default(),
        upload_chunk_size: None,
    })
}

/// Reads a password from stdin (for `--registry-password-stdin`), without its line ending.
pub fn read_password_stdin() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut password)
        .map_err(|error| anyhow::anyhow!("reading the registry password from stdin: {error}"))?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        anyhow::bail!(
            "--registry-password-stdin: standard input was empty; pipe the password in, e.g. `cat pw.txt | coder-install ...`"
        );
    }
    Ok(password)
}
