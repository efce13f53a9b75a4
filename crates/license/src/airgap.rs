//! The tier rule for air-gapped installs, checked separately from validity because connected
//! installs accept any valid license (and none, as the free tier).
//!
//! `free` and `trial` licenses never allow air-gapped installs; `enterprise` licenses allow them
//! only with `features.airgap == true`.

use crate::claims::{Claims, Tier};
use crate::error::LicenseError;

/// Whether the (already verified) claims allow an air-gapped install, and if not, why.
pub fn check_airgap(claims: &Claims) -> Result<(), LicenseError> {
    match claims.tier {
        Tier::Free | Tier::Trial => Err(LicenseError::AirgapNotAllowedForTier { tier: claims.tier }),
        Tier::Enterprise if !claims.features.airgap => Err(LicenseError::AirgapFeatureMissing),
        Tier::Enterprise => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::tests::enterprise_claims;

    fn claims(tier: Tier, airgap: bool) -> Claims {
        let mut claims = enterprise_claims();
        claims.tier = tier;
        claims.features.airgap = airgap;
        claims
    }

    #[test]
    fn enterprise_with_the_airgap_feature_is_allowed() {
        assert_eq!(check_airgap(&claims(Tier::Enterprise, true)), Ok(()));
    }

    #[test]
    fn enterprise_without_the_airgap_feature_is_refused() {
        let error = check_airgap(&claims(Tier::Enterprise, false)).expect_err("refused");
        assert_eq!(error, LicenseError::AirgapFeatureMissing);
        assert!(error.to_string().contains("features.airgap is false"), "{error}");
    }

    #[test]
    fn free_and_trial_are_refused_even_with_the_airgap_feature_naming_tier_and_sales() {
        for tier in [Tier::Free, Tier::Trial] {
            for airgap in [false, true] {
                let error = check_airgap(&claims(tier, airgap)).expect_err("refused");
                assert_eq!(error, LicenseError::AirgapNotAllowedForTier { tier });
                let message = error.to_string();
                assert!(
                    message.contains(&format!("this is a {tier} license")),
                    "{message}"
                );
                assert!(message.contains("need an enterprise license"), "{message}");
                assert!(message.contains("sales@coder.com"), "{message}");
            }
        }
    }
}
