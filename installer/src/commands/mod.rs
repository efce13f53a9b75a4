//! One module per subcommand: each turns parsed arguments into calls to the library and prints
//! the result, as text or JSON; and the exit code an error maps to.

pub mod allowlist;
pub mod apply;
pub mod bundle;
pub mod deploy_args;
pub mod inspect;
pub mod license;
pub mod lock;
pub mod preflight;
pub mod push;
pub mod rollback;
pub mod status;
pub mod template;
pub mod uninstall;
pub mod verify;

use std::path::{Path, PathBuf};

use bundle_spec::{BundleSpec, DEFAULT_LOCK, DEFAULT_SPEC, ImageLock};

use coder_license::LicenseError;

use crate::cli::{InputArgs, RegistryArgs};
use coder_bundle::Inputs;
use coder_registry::{CredentialStore, RegistryOptions};

/// Loads the spec (a file or the built-in one).
pub(crate) fn load_spec(path: Option<&Path>) -> anyhow::Result<(BundleSpec, String, Option<PathBuf>)> {
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
pub(crate) fn load_inputs(args: &InputArgs) -> anyhow::Result<Inputs> {
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
pub(crate) enum LockNeed {
    /// A spec file needs `images.lock` beside it (or `--lock`).
    Required,
    /// A spec file without a lock beside it is fine.
    Optional,
}

/// A lock as read.
pub(crate) struct LoadedLock {
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
pub(crate) fn read_lock(
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
pub(crate) fn registry_options(args: &RegistryArgs) -> anyhow::Result<RegistryOptions> {
    Ok(RegistryOptions {
        insecure_registries: args.insecure_registries.clone(),
        ca_files: args.registry_ca.clone(),
        credentials: CredentialStore::from_docker_config()?,
        attempts: 4,
        redirects: Default::default(),
        reporter: Default::default(),
    })
}

/// Reads a password from stdin (for `--registry-password-stdin`), without its line ending.
pub(crate) fn read_password_stdin() -> anyhow::Result<String> {
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

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The process exit code for a failed command: a license error's own code (see
/// [`coder_license::ErrorKind::exit_code`]) or a failed allowlist audit's (30), anywhere in the
/// error's chain; 1 for anything else.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|cause| {
            cause
                .downcast_ref::<LicenseError>()
                .map(LicenseError::exit_code)
                .or_else(|| {
                    cause
                        .downcast_ref::<allowlist::AuditFailed>()
                        .map(|_| allowlist::AuditFailed::EXIT_CODE)
                })
        })
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_errors_keep_their_code_through_context_and_others_exit_1() {
        let license_error = anyhow::Error::new(LicenseError::AirgapFeatureMissing).context("checking");
        assert_eq!(exit_code(&license_error), 22);
        assert_eq!(exit_code(&anyhow::anyhow!("no such file")), 1);
    }
}
