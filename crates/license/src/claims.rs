//! What a license says: who it is for, its tier and features, and when it is valid.
//!
//! Claims are read in two steps: first only `version`, so that a license in a newer format is
//! refused with "upgrade coder-install" instead of a confusing parse error; then the full claims.
//! Unknown claim fields are ignored: the issuer may add informational fields within a format
//! version, while any change that would alter how a license is judged bumps [`FORMAT_VERSION`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{LicenseError, Part};
use crate::time::{EARLIEST_LICENSE_TIME, LATEST_LICENSE_TIME, format_unix_time};

/// The newest license format version this build understands (and the one it issues).
pub const FORMAT_VERSION: u32 = 1;

/// A license's commercial tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The free tier: connected installs only.
    Free,
    /// A time-limited trial: connected installs only.
    Trial,
    /// A paid enterprise license: air-gapped installs when `features.airgap` is set.
    Enterprise,
}

impl Tier {
    /// The tier as the claims spell it (`free`, `trial`, `enterprise`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Trial => "trial",
            Tier::Enterprise => "enterprise",
        }
    }
}

impl FromStr for Tier {
    type Err = String;

    fn from_str(text: &str) -> Result<Tier, String> {
        [Tier::Free, Tier::Trial, Tier::Enterprise]
            .into_iter()
            .find(|tier| tier.as_str() == text)
            .ok_or_else(|| format!("`{text}` is not a tier: free, trial or enterprise"))
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// What the license unlocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// Whether air-gapped installs are allowed (only honoured for the enterprise tier).
    pub airgap: bool,
    /// How many users the platform may have.
    pub user_limit: u32,
}

/// The signed content of a license. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The license format version ([`FORMAT_VERSION`] when issued by this build).
    pub version: u32,
    /// Unique id of this license.
    pub license_id: String,
    /// The customer's name, as shown to people.
    pub account_name: String,
    /// The customer's stable id.
    pub account_id: String,
    /// The commercial tier.
    pub tier: Tier,
    /// What the license unlocks.
    pub features: Features,
    /// When the license was issued.
    pub iat: i64,
    /// When the license starts being valid.
    pub nbf: i64,
    /// End of term: after this the license works only during its grace period, with a warning.
    pub license_expires: i64,
    /// End of grace: after this the license is refused.
    pub grace_until: i64,
}

/// Just the version field, read before anything else.
#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

impl Claims {
    /// Parses the decoded claims JSON: version first (newer versions are refused with
    /// [`LicenseError::UnsupportedVersion`]), then the whole claims, then [`Claims::validate`].
    pub fn from_json(json: &[u8]) -> Result<Claims, LicenseError> {
        let bad_json = |error: serde_json::Error| LicenseError::BadJson {
            part: Part::Claims,
            detail: error.to_string(),
        };
        let VersionOnly { version } = serde_json::from_slice(json).map_err(bad_json)?;
        if version > u64::from(FORMAT_VERSION) {
            return Err(LicenseError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let claims: Claims = serde_json::from_slice(json).map_err(bad_json)?;
        claims.validate()?;
        Ok(claims)
    }

    /// Checks the rules every license must keep, whoever signed it: a known format version,
    /// non-empty ids and name, at least one user, times within years 1970 to 9998, and
    /// `iat <= license_expires`, `nbf <= license_expires <= grace_until`.
    pub fn validate(&self) -> Result<(), LicenseError> {
        let invalid = |detail: String| Err(LicenseError::InvalidClaims { detail });
        if self.version == 0 || self.version > FORMAT_VERSION {
            return invalid(format!(
                "format version {} is not one this build issues or reads (1 to {FORMAT_VERSION})",
                self.version
            ));
        }
        for (field, value) in [
            ("license_id", &self.license_id),
            ("account_name", &self.account_name),
            ("account_id", &self.account_id),
        ] {
            if value.trim().is_empty() {
                return invalid(format!("`{field}` is empty"));
            }
        }
        if self.features.user_limit == 0 {
            return invalid("`features.user_limit` is 0: a license allows at least one user".to_owned());
        }
        for (field, value) in [
            ("iat", self.iat),
            ("nbf", self.nbf),
            ("license_expires", self.license_expires),
            ("grace_until", self.grace_until),
        ] {
            if !(EARLIEST_LICENSE_TIME..=LATEST_LICENSE_TIME).contains(&value) {
                return invalid(format!("`{field}` ({value}) is not a time between 1970 and 9998"));
            }
        }
        if self.nbf > self.license_expires {
            return invalid(format!(
                "it becomes valid ({}) after it expires ({})",
                format_unix_time(self.nbf),
                format_unix_time(self.license_expires)
            ));
        }
        if self.iat > self.license_expires {
            return invalid(format!(
                "it was issued ({}) after it expires ({})",
                format_unix_time(self.iat),
                format_unix_time(self.license_expires)
            ));
        }
        if self.license_expires > self.grace_until {
            return invalid(format!(
                "its grace period ends ({}) before its term ({})",
                format_unix_time(self.grace_until),
                format_unix_time(self.license_expires)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// 2027-01-01T00:00:00Z.
    pub(crate) const JAN_2027: i64 = 1_798_761_600;
    /// One day in seconds.
    pub(crate) const DAY: i64 = 86_400;

    /// An enterprise air-gap license valid through 2027, with 30 days of grace.
    pub(crate) fn enterprise_claims() -> Claims {
        Claims {
            version: FORMAT_VERSION,
            license_id: "lic-test-1".to_owned(),
            account_name: "Example Corp".to_owned(),
            account_id: "example-corp".to_owned(),
            tier: Tier::Enterprise,
            features: Features {
                airgap: true,
                user_limit: 50,
            },
            iat: JAN_2027,
            nbf: JAN_2027,
            license_expires: JAN_2027 + 365 * DAY,
            grace_until: JAN_2027 + 395 * DAY,
        }
    }

    fn json(claims: &Claims) -> Vec<u8> {
        serde_json::to_vec(claims).expect("claims serialize")
    }

    #[test]
    fn claims_round_trip_through_json() {
        let claims = enterprise_claims();
        assert_eq!(Claims::from_json(&json(&claims)), Ok(claims));
    }

    #[test]
    fn unknown_fields_are_ignored_within_a_version() {
        let mut value = serde_json::to_value(enterprise_claims()).expect("to value");
        value["sales_note"] = serde_json::json!("renewal 2027");
        let bytes = serde_json::to_vec(&value).expect("to vec");
        assert_eq!(Claims::from_json(&bytes), Ok(enterprise_claims()));
    }

    #[test]
    fn a_newer_version_is_refused_before_its_shape_is_read() {
        let newer = br#"{"version": 2, "entitlements": ["a different shape"]}"#;
        let error = Claims::from_json(newer).expect_err("newer version");
        assert_eq!(
            error,
            LicenseError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        );
        assert!(error.to_string().contains("upgrade coder-install"), "{error}");
    }

    #[test]
    fn missing_fields_and_unknown_tiers_are_bad_json() {
        for text in [
            r#"{"license_id": "x"}"#.to_owned(),
            String::from_utf8(json(&enterprise_claims()))
                .expect("utf8")
                .replace("enterprise", "platinum"),
            "[1, 2]".to_owned(),
        ] {
            let error = Claims::from_json(text.as_bytes()).expect_err(&text);
            assert_eq!(error.kind(), ErrorKind::BadJson, "{text}: {error}");
        }
    }

    #[test]
    fn inconsistent_claims_are_invalid() {
        let breakages: [fn(&mut Claims); 7] = [
            |claims| claims.version = 0,
            |claims| claims.account_name = " ".to_owned(),
            |claims| claims.features.user_limit = 0,
            |claims| claims.nbf = claims.license_expires + 1,
            |claims| claims.iat = claims.license_expires + 1,
            |claims| claims.grace_until = claims.license_expires - 1,
            |claims| claims.grace_until = i64::MAX,
        ];
        for (index, breakage) in breakages.iter().enumerate() {
            let mut claims = enterprise_claims();
            breakage(&mut claims);
            let error = Claims::from_json(&json(&claims)).expect_err("invalid claims");
            assert_eq!(
                error.kind(),
                ErrorKind::InvalidClaims,
                "breakage {index}: {error}"
            );
        }
    }
}
