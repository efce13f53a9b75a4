//! Everything that can be wrong with a license, each with a message that says what is wrong and
//! what to do, and a stable [`ErrorKind`] (with an exit code) for the command line.

use std::fmt;

use crate::claims::Tier;
use crate::time::format_unix_time;

/// Where to get a license, named in every message that ends in "get a new license".
pub const SALES_CONTACT: &str = "sales@coder.com";

/// A license that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    /// The text is not three dot-separated parts of the expected sizes (empty or truncated file).
    #[error(
        "the license is malformed: {detail}. It looks truncated or is not a license file; \
         use the complete license file as issued (one line of three dot-separated parts)"
    )]
    Malformed {
        /// What exactly is missing or the wrong size.
        detail: String,
    },
    /// The file, or a decoded part of it, is not UTF-8 text.
    #[error(
        "the license's {part} is not UTF-8 text: the file is damaged or is not a license file; \
         use the license file as issued"
    )]
    NotUtf8 {
        /// Which part is not text.
        part: Part,
    },
    /// A part is not valid unpadded base64url.
    #[error(
        "the license's {part} is not valid base64url ({detail}): the file is damaged; \
         use the license file as issued"
    )]
    BadBase64 {
        /// Which part failed to decode.
        part: Part,
        /// The decoder's reason.
        detail: String,
    },
    /// A part decoded, but is not JSON of the expected shape.
    #[error(
        "the license's {part} is not valid JSON of the expected shape ({detail}): the file is damaged \
         or was not issued by Coder; use the license file as issued"
    )]
    BadJson {
        /// Which part failed to parse.
        part: Part,
        /// The parser's reason.
        detail: String,
    },
    /// The header names an algorithm other than EdDSA (`none`, `HS256`, ...): refused before the
    /// signature is looked at, so no algorithm confusion is possible.
    #[error(
        "the license says it is signed with algorithm `{alg}`, but only EdDSA (Ed25519) signatures are \
         accepted: this is not a genuine Coder license; ask {SALES_CONTACT} for one"
    )]
    UnsupportedAlgorithm {
        /// The algorithm the header names (`(missing)` when it names none).
        alg: String,
    },
    /// The header names a signing key this build does not trust (or names none).
    #[error(
        "the license is signed with key `{kid}`, which this build of coder-install does not trust: if \
         the license is newer than this coder-install, upgrade coder-install; otherwise the license was \
         not issued by Coder; ask {SALES_CONTACT} for one"
    )]
    UnknownKid {
        /// The key id the header names (`(missing)` when it names none).
        kid: String,
    },
    /// The signature does not match the header and claims under the named trusted key.
    #[error(
        "the license's signature does not match its content (key `{kid}`): the file was altered or was \
         not issued by Coder; use the license file exactly as issued"
    )]
    BadSignature {
        /// The trusted key the signature was checked against.
        kid: String,
    },
    /// The license's format version is newer than this build understands.
    #[error(
        "the license uses format version {found}, but this coder-install understands format versions up \
         to {supported}: upgrade coder-install"
    )]
    UnsupportedVersion {
        /// The version the license declares.
        found: u64,
        /// The newest version this build understands.
        supported: u32,
    },
    /// The claims are signed, well-formed JSON, but contradict themselves or are out of range.
    #[error("the license's claims are invalid: {detail}; ask {SALES_CONTACT} for a corrected license")]
    InvalidClaims {
        /// Which rule the claims break.
        detail: String,
    },
    /// The license's `nbf` lies in the future (beyond the allowed clock skew).
    #[error(
        "the license is not valid before {} (this machine's clock says {}): check the clock, or wait \
         until then",
        format_unix_time(*not_before),
        format_unix_time(*now)
    )]
    NotYetValid {
        /// When it becomes valid, Unix seconds.
        not_before: i64,
        /// The time it was checked at, Unix seconds.
        now: i64,
    },
    /// The license's term and grace period are both over.
    #[error(
        "the license expired on {} and its grace period ended on {}: it no longer works; renew it \
         (contact {SALES_CONTACT})",
        format_unix_time(*expired_at),
        format_unix_time(*grace_ended_at)
    )]
    Expired {
        /// End of term, Unix seconds.
        expired_at: i64,
        /// End of grace, Unix seconds.
        grace_ended_at: i64,
    },
    /// Air-gapped installs were asked for with a `free` or `trial` license.
    #[error(
        "this is a {tier} license, and air-gapped installs need an enterprise license: to get one, \
         contact {SALES_CONTACT} (connected installs work with this license)"
    )]
    AirgapNotAllowedForTier {
        /// The license's tier.
        tier: Tier,
    },
    /// Air-gapped installs were asked for with an enterprise license that lacks the feature.
    #[error(
        "this enterprise license does not include air-gapped installs (features.airgap is false): ask \
         {SALES_CONTACT} for a license with the air-gap feature (connected installs work with this license)"
    )]
    AirgapFeatureMissing,
}

/// The three parts of a compact token, and the token as a whole, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The whole license file.
    File,
    /// The first part: the JOSE header.
    Header,
    /// The second part: the claims.
    Claims,
    /// The third part: the Ed25519 signature.
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Part::File => "file",
            Part::Header => "header (first part)",
            Part::Claims => "claims (second part)",
            Part::Signature => "signature (third part)",
        })
    }
}

/// A stable, machine-readable name and exit code for each [`LicenseError`] variant.
///
/// The exit codes are part of the command line's interface: scripts may rely on them, so a code
/// is never reused for another meaning. 1 is a general failure and 2 a usage error, so license
/// errors start at 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// [`LicenseError::Malformed`].
    Malformed,
    /// [`LicenseError::NotUtf8`].
    NotUtf8,
    /// [`LicenseError::BadBase64`].
    BadBase64,
    /// [`LicenseError::BadJson`].
    BadJson,
    /// [`LicenseError::UnsupportedAlgorithm`].
    UnsupportedAlgorithm,
    /// [`LicenseError::UnknownKid`].
    UnknownKid,
    /// [`LicenseError::BadSignature`].
    BadSignature,
    /// [`LicenseError::UnsupportedVersion`].
    UnsupportedVersion,
    /// [`LicenseError::InvalidClaims`].
    InvalidClaims,
    /// [`LicenseError::NotYetValid`].
    NotYetValid,
    /// [`LicenseError::Expired`].
    Expired,
    /// [`LicenseError::AirgapNotAllowedForTier`].
    AirgapNotAllowedForTier,
    /// [`LicenseError::AirgapFeatureMissing`].
    AirgapFeatureMissing,
}

impl ErrorKind {
    /// Every kind, in exit-code order.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::Malformed,
        ErrorKind::NotUtf8,
        ErrorKind::BadBase64,
        ErrorKind::BadJson,
        ErrorKind::UnsupportedAlgorithm,
        ErrorKind::UnknownKid,
        ErrorKind::BadSignature,
        ErrorKind::UnsupportedVersion,
        ErrorKind::InvalidClaims,
        ErrorKind::NotYetValid,
        ErrorKind::Expired,
        ErrorKind::AirgapNotAllowedForTier,
        ErrorKind::AirgapFeatureMissing,
    ];

    /// The process exit code the command line uses for this kind (10 to 22).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Malformed => 10,
            ErrorKind::NotUtf8 => 11,
            ErrorKind::BadBase64 => 12,
            ErrorKind::BadJson => 13,
            ErrorKind::UnsupportedAlgorithm => 14,
            ErrorKind::UnknownKid => 15,
            ErrorKind::BadSignature => 16,
            ErrorKind::UnsupportedVersion => 17,
            ErrorKind::InvalidClaims => 18,
            ErrorKind::NotYetValid => 19,
            ErrorKind::Expired => 20,
            ErrorKind::AirgapNotAllowedForTier => 21,
            ErrorKind::AirgapFeatureMissing => 22,
        }
    }

    /// The kind's stable snake_case name, as JSON output shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed",
            ErrorKind::NotUtf8 => "not_utf8",
            ErrorKind::BadBase64 => "bad_base64",
            ErrorKind::BadJson => "bad_json",
            ErrorKind::UnsupportedAlgorithm => "unsupported_algorithm",
            ErrorKind::UnknownKid => "unknown_kid",
            ErrorKind::BadSignature => "bad_signature",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::InvalidClaims => "invalid_claims",
            ErrorKind::NotYetValid => "not_yet_valid",
            ErrorKind::Expired => "expired",
            ErrorKind::AirgapNotAllowedForTier => "airgap_not_allowed_for_tier",
            ErrorKind::AirgapFeatureMissing => "airgap_feature_missing",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl LicenseError {
    /// This error's stable kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LicenseError::Malformed { .. } => ErrorKind::Malformed,
            LicenseError::NotUtf8 { .. } => ErrorKind::NotUtf8,
            LicenseError::BadBase64 { .. } => ErrorKind::BadBase64,
            LicenseError::BadJson { .. } => ErrorKind::BadJson,
            LicenseError::UnsupportedAlgorithm { .. } => ErrorKind::UnsupportedAlgorithm,
            LicenseError::UnknownKid { .. } => ErrorKind::UnknownKid,
            LicenseError::BadSignature { .. } => ErrorKind::BadSignature,
            LicenseError::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            LicenseError::InvalidClaims { .. } => ErrorKind::InvalidClaims,
            LicenseError::NotYetValid { .. } => ErrorKind::NotYetValid,
            LicenseError::Expired { .. } => ErrorKind::Expired,
            LicenseError::AirgapNotAllowedForTier { .. } => ErrorKind::AirgapNotAllowedForTier,
            LicenseError::AirgapFeatureMissing => ErrorKind::AirgapFeatureMissing,
        }
    }

    /// The process exit code for this error: `self.kind().exit_code()`.
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_kind_has_its_own_exit_code_and_name_clear_of_general_and_usage_codes() {
        let codes: HashSet<u8> = ErrorKind::ALL.iter().map(|kind| kind.exit_code()).collect();
        let names: HashSet<&str> = ErrorKind::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert!(codes.iter().all(|code| *code >= 10), "{codes:?}");
    }
}
