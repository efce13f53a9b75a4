//! Verification: a trusted key by `kid`, the Ed25519 signature (`verify_strict`), the claims,
//! and the time rules.
//!
//! Time rules, with a clock skew allowance of [`CLOCK_SKEW_SECONDS`] (5 minutes) in the
//! license holder's favour on every bound:
//! - before `nbf`: refused ([`LicenseError::NotYetValid`]);
//! - from `nbf` to `license_expires`: accepted ([`Standing::Active`]);
//! - from `license_expires` to `grace_until`: accepted with a warning naming the time it stops
//!   working ([`Standing::InGrace`]);
//! - after `grace_until`: refused ([`LicenseError::Expired`]).

use std::time::SystemTime;

use ed25519_dalek::VerifyingKey;

use crate::claims::Claims;
use crate::error::{LicenseError, SALES_CONTACT};
use crate::keys::{TrustedKey, trusted_keys};
use crate::time::{format_unix_time, unix_seconds};
use crate::token::DecodedToken;

/// How far this machine's clock may be off (seconds) before a time bound is enforced: 5 minutes.
pub const CLOCK_SKEW_SECONDS: i64 = 5 * 60;

/// Where a valid license stands in its validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Within its term.
    Active,
    /// Past its term, within its grace period: it works, with a warning.
    InGrace {
        /// End of term, Unix seconds.
        expired_at: i64,
        /// End of grace, when it stops working, Unix seconds.
        stops_working_at: i64,
    },
}

/// A license whose signature, claims and time window were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLicense {
    /// The id of the trusted key that signed it.
    pub kid: String,
    /// Its claims.
    pub claims: Claims,
    /// Within its term or its grace period.
    pub standing: Standing,
}

impl VerifiedLicense {
    /// The loud warning to show while the license is in its grace period, naming the time it
    /// stops working; `None` within its term.
    pub fn grace_warning(&self) -> Option<String> {
        match self.standing {
            Standing::Active => None,
            Standing::InGrace {
                expired_at,
                stops_working_at,
            } => Some(format!(
                "WARNING: this license expired on {}; it is in its grace period and STOPS WORKING ON {}. \
                 Renew it now (contact {SALES_CONTACT})",
                format_unix_time(expired_at),
                format_unix_time(stops_working_at)
            )),
        }
    }
}

/// Verifies a license file's bytes now. See [`verify_at`].
pub fn verify(license: &[u8]) -> Result<VerifiedLicense, LicenseError> {
    verify_at(license, SystemTime::now())
}

/// Verifies a license file's bytes as of `now`, against the keys compiled into this build.
///
/// Order: structure and header ([`DecodedToken::decode`], which refuses any algorithm but
/// EdDSA), a trusted key for the `kid`, the signature with `verify_strict`, the claims
/// (version first), then the time rules of this module.
pub fn verify_at(license: &[u8], now: SystemTime) -> Result<VerifiedLicense, LicenseError> {
    verify_with_keys(license, unix_seconds(now), &trusted_keys())
}

/// [`verify_at`] against an explicit key list: private, so only this crate's tests choose keys.
pub(crate) fn verify_with_keys(
    license: &[u8],
    now: i64,
    keys: &[TrustedKey],
) -> Result<VerifiedLicense, LicenseError> {
    let token = DecodedToken::decode(license)?;
    let kid = token.header.kid.clone();
    let trusted = keys
        .iter()
        .find(|key| key.kid == kid)
        .ok_or_else(|| LicenseError::UnknownKid { kid: kid.clone() })?;
    // Compiled-in keys are checked to be valid points by the keys module's tests.
    let verifying_key = VerifyingKey::from_bytes(&trusted.public_key)
        .map_err(|_| LicenseError::UnknownKid { kid: kid.clone() })?;
    verifying_key
        .verify_strict(token.signing_input.as_bytes(), &token.signature)
        .map_err(|_| LicenseError::BadSignature { kid: kid.clone() })?;
    let claims = token.claims()?;
    let standing = judge_time(&claims, now)?;
    Ok(VerifiedLicense {
        kid,
        claims,
        standing,
    })
}

/// Applies the time rules (see the module documentation) to claims as of `now` (Unix seconds).
pub fn judge_time(claims: &Claims, now: i64) -> Result<Standing, LicenseError> {
    if now.saturating_add(CLOCK_SKEW_SECONDS) < claims.nbf {
        return Err(LicenseError::NotYetValid {
            not_before: claims.nbf,
            now,
        });
    }
    let lenient_now = now.saturating_sub(CLOCK_SKEW_SECONDS);
    if lenient_now > claims.grace_until {
        return Err(LicenseError::Expired {
            expired_at: claims.license_expires,
            grace_ended_at: claims.grace_until,
        });
    }
    if lenient_now > claims.license_expires {
        return Ok(Standing::InGrace {
            expired_at: claims.license_expires,
            stops_working_at: claims.grace_until,
        });
    }
    Ok(Standing::Active)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::claims::tests::{DAY, JAN_2027, enterprise_claims};
    use crate::error::ErrorKind;
    use crate::test_keys::{self, TEST_KEY, TEST_KEY_ID};
    use crate::token::{encode_part, sign, sign_parts};

    const IN_TERM: i64 = JAN_2027 + 100 * DAY;

    fn test_license(claims: &Claims) -> String {
        sign(claims, TEST_KEY_ID, &test_keys::signing_key()).expect("sign")
    }

    fn check(license: &str, now: i64) -> Result<VerifiedLicense, LicenseError> {
        verify_with_keys(license.as_bytes(), now, &[TEST_KEY])
    }

    fn refusal(license: &str, now: i64) -> ErrorKind {
        check(license, now).expect_err("refused").kind()
    }

    #[test]
    fn a_license_from_a_trusted_key_within_its_term_is_active() {
        let verified = check(&test_license(&enterprise_claims()), IN_TERM).expect("valid");
        assert_eq!(verified.kid, TEST_KEY_ID);
        assert_eq!(verified.claims, enterprise_claims());
        assert_eq!(verified.standing, Standing::Active);
        assert_eq!(verified.grace_warning(), None);
    }

    #[test]
    fn one_changed_byte_of_the_claims_breaks_the_signature() {
        let license = test_license(&enterprise_claims());
        let parts: Vec<&str> = license.split('.').collect();
        let claims_json = serde_json::to_string(&enterprise_claims()).expect("json");
        let tampered_json = claims_json.replace("\"user_limit\":50", "\"user_limit\":90");
        assert_ne!(claims_json, tampered_json);
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            encode_part(tampered_json.as_bytes()),
            parts[2]
        );
        assert_eq!(refusal(&tampered, IN_TERM), ErrorKind::BadSignature);
    }

    #[test]
    fn a_signature_by_another_key_under_a_trusted_kid_is_bad() {
        let forger = SigningKey::from_bytes(&[42; 32]);
        let forged = sign(&enterprise_claims(), TEST_KEY_ID, &forger).expect("sign");
        assert_eq!(refusal(&forged, IN_TERM), ErrorKind::BadSignature);
    }

    /// The production key `coder-license-2026-11` was retired when its private half was lost
    /// (README, "Key rotation"): licenses naming it are refused by this build. The kid is looked
    /// up before the signature is read, so any signature will do here (the test key's: the lost
    /// private key cannot sign); and its public key is trusted under no other kid either.
    #[test]
    fn licenses_signed_by_the_retired_kid_coder_license_2026_11_are_refused() {
        const RETIRED_KID: &str = "coder-license-2026-11";
        const RETIRED_PUBLIC_KEY: &str = "ef09b8fa7e76262654662a6116fd80ad06ef6c6a2ee5eab018a683afb746c03e";
        let license = sign(&enterprise_claims(), RETIRED_KID, &test_keys::signing_key()).expect("sign");
        let error = verify_with_keys(license.as_bytes(), IN_TERM, &trusted_keys()).expect_err("refused");
        assert_eq!(
            error,
            LicenseError::UnknownKid {
                kid: RETIRED_KID.to_owned()
            }
        );
        assert_eq!(error.kind(), ErrorKind::UnknownKid);
        for key in trusted_keys() {
            assert_ne!(key.kid, RETIRED_KID);
            let hex: String = key.public_key.iter().map(|byte| format!("{byte:02x}")).collect();
            assert_ne!(hex, RETIRED_PUBLIC_KEY, "{}", key.kid);
        }
    }

    #[test]
    fn an_unknown_kid_is_refused_even_when_the_signature_is_genuine() {
        let license = sign(&enterprise_claims(), "someone-else", &test_keys::signing_key()).expect("sign");
        let error = check(&license, IN_TERM).expect_err("unknown kid");
        assert_eq!(
            error,
            LicenseError::UnknownKid {
                kid: "someone-else".to_owned()
            }
        );
        assert!(error.to_string().contains("does not trust"), "{error}");
    }

    #[test]
    fn hs256_signed_with_the_public_key_as_secret_is_refused_as_an_algorithm() {
        // The classic confusion: an HMAC "signature" keyed with the (public) verifying key.
        let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{TEST_KEY_ID}"}}"#);
        let claims = serde_json::to_vec(&enterprise_claims()).expect("json");
        let license = sign_parts(header.as_bytes(), &claims, &test_keys::signing_key());
        assert_eq!(refusal(&license, IN_TERM), ErrorKind::UnsupportedAlgorithm);
    }

    #[test]
    fn alg_none_is_refused() {
        let header = format!(r#"{{"alg":"none","kid":"{TEST_KEY_ID}"}}"#);
        let claims = serde_json::to_vec(&enterprise_claims()).expect("json");
        let license = format!("{}.{}.", encode_part(header.as_bytes()), encode_part(&claims));
        assert_eq!(refusal(&license, IN_TERM), ErrorKind::UnsupportedAlgorithm);
    }

    #[test]
    fn a_newer_signed_format_version_says_to_upgrade() {
        let mut claims = enterprise_claims();
        claims.version = 2;
        let claims_json = serde_json::to_vec(&claims).expect("json");
        let header = format!(r#"{{"alg":"EdDSA","kid":"{TEST_KEY_ID}"}}"#);
        let license = sign_parts(header.as_bytes(), &claims_json, &test_keys::signing_key());
        let error = check(&license, IN_TERM).expect_err("newer");
        assert_eq!(error.kind(), ErrorKind::UnsupportedVersion);
        assert!(error.to_string().contains("upgrade coder-install"), "{error}");
    }

    #[test]
    fn before_not_before_is_refused_beyond_the_clock_skew() {
        let license = test_license(&enterprise_claims());
        assert_eq!(
            refusal(&license, JAN_2027 - CLOCK_SKEW_SECONDS - 1),
            ErrorKind::NotYetValid
        );
        assert!(check(&license, JAN_2027 - CLOCK_SKEW_SECONDS).is_ok());
    }

    #[test]
    fn after_the_term_the_grace_period_warns_with_the_stop_date() {
        let claims = enterprise_claims();
        let license = test_license(&claims);
        let in_term_by_skew = check(&license, claims.license_expires + CLOCK_SKEW_SECONDS).expect("valid");
        assert_eq!(in_term_by_skew.standing, Standing::Active);
        let in_grace = check(&license, claims.license_expires + CLOCK_SKEW_SECONDS + 1).expect("grace");
        assert_eq!(
            in_grace.standing,
            Standing::InGrace {
                expired_at: claims.license_expires,
                stops_working_at: claims.grace_until
            }
        );
        let warning = in_grace.grace_warning().expect("a warning");
        assert!(
            warning.contains("STOPS WORKING ON 2028-01-31T00:00:00Z"),
            "{warning}"
        );
    }

    #[test]
    fn past_the_grace_period_is_refused() {
        let claims = enterprise_claims();
        let license = test_license(&claims);
        assert!(check(&license, claims.grace_until + CLOCK_SKEW_SECONDS).is_ok());
        let error = check(&license, claims.grace_until + CLOCK_SKEW_SECONDS + 1).expect_err("expired");
        assert_eq!(error.kind(), ErrorKind::Expired);
        assert!(error.to_string().contains("2028-01-31T00:00:00Z"), "{error}");
    }

    #[test]
    fn extreme_clocks_do_not_overflow() {
        let license = test_license(&enterprise_claims());
        assert_eq!(refusal(&license, i64::MIN), ErrorKind::NotYetValid);
        assert_eq!(refusal(&license, i64::MAX), ErrorKind::Expired);
    }
}
