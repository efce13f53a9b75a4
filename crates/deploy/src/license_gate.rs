//! The license gate of every command that installs: offline, before anything is pushed, rendered
//! or written. Air-gapped installs (`apply --bundle`, `push`, `template --bundle`) need a license
//! that verifies and allows them (enterprise with the air-gap feature), as `license verify
//! --airgap` checks; connected installs take any license that verifies, or none (the free tier).
//!
//! A refusal keeps the [`LicenseError`] as its source, so the binary finds the license's own exit
//! code (10 to 22, [`coder_license::ErrorKind`]) in the error's chain.

use std::path::{Path, PathBuf};

use coder_license::{LicenseError, Tier, VerifiedLicense, check_airgap, verify};
use coder_progress::Progress;

/// Why the gate refused; each says what was not done (e.g. "nothing was pushed or applied").
#[derive(Debug, thiserror::Error)]
pub enum LicenseGateError {
    /// No `--license` for an air-gapped install: the free tier, refused like a free license.
    #[error("no --license given, so this is the free tier; {undone}")]
    Missing {
        /// What was not done.
        undone: &'static str,
        /// The free tier's refusal.
        #[source]
        refusal: LicenseError,
    },
    /// The license file could not be read.
    #[error("reading license file {}; {undone}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What was not done.
        undone: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The license does not verify, or does not allow this install.
    #[error("license file {} is refused; {undone}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// What was not done.
        undone: &'static str,
        /// The refusal, with its exit code.
        #[source]
        refusal: LicenseError,
    },
}

impl LicenseGateError {
    /// The license's refusal, when the gate refused the license itself (not a missing file).
    pub fn refusal(&self) -> Option<&LicenseError> {
        match self {
            Self::Missing { refusal, .. } | Self::Refused { refusal, .. } => Some(refusal),
            Self::Unreadable { .. } => None,
        }
    }
}

/// Checks the license of an air-gapped install: `path` must verify and allow air-gapped installs;
/// none is the free tier, refused. Reports the grace-period warning; returns the license's bytes
/// (for the manager's Secret). `undone` says what the refusal leaves undone.
pub fn require_airgap_license(
    path: Option<&Path>,
    undone: &'static str,
    progress: &dyn Progress,
) -> Result<Vec<u8>, LicenseGateError> {
    let Some(path) = path else {
        return Err(LicenseGateError::Missing {
            undone,
            refusal: LicenseError::AirgapNotAllowedForTier { tier: Tier::Free },
        });
    };
    let bytes = read(path, undone)?;
    let license = verify(&bytes)
        .and_then(|license| check_airgap(&license.claims).map(|()| license))
        .map_err(|refusal| refused(path, undone, refusal))?;
    warn_if_in_grace(&license, progress);
    Ok(bytes)
}

/// Checks the license of a connected install: any license that verifies (none is the free tier,
/// which needs no file). Reports the grace-period warning; returns the license's bytes.
pub fn read_connected_license(
    path: &Path,
    undone: &'static str,
    progress: &dyn Progress,
) -> Result<Vec<u8>, LicenseGateError> {
    let bytes = read(path, undone)?;
    let license = verify(&bytes).map_err(|refusal| refused(path, undone, refusal))?;
    warn_if_in_grace(&license, progress);
    Ok(bytes)
}

/// The gate for an install of either kind: [`require_airgap_license`] when `air_gapped`, else
/// [`read_connected_license`] when a file is given. `None`: connected and no file (free tier).
pub fn check_license(
    air_gapped: bool,
    path: Option<&Path>,
    undone: &'static str,
    progress: &dyn Progress,
) -> Result<Option<Vec<u8>>, LicenseGateError> {
    match (air_gapped, path) {
        (true, path) => require_airgap_license(path, undone, progress).map(Some),
        (false, Some(path)) => read_connected_license(path, undone, progress).map(Some),
        (false, None) => Ok(None),
    }
}

fn read(path: &Path, undone: &'static str) -> Result<Vec<u8>, LicenseGateError> {
    std::fs::read(path).map_err(|source| LicenseGateError::Unreadable {
        path: path.to_owned(),
        undone,
        source,
    })
}

fn refused(path: &Path, undone: &'static str, refusal: LicenseError) -> LicenseGateError {
    LicenseGateError::Refused {
        path: path.to_owned(),
        undone,
        refusal,
    }
}

fn warn_if_in_grace(license: &VerifiedLicense, progress: &dyn Progress) {
    if let Some(warning) = license.grace_warning() {
        progress.warning(&warning);
    }
}
