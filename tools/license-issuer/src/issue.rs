//! `issue`: turns the command line into claims, signs them and writes the license file.

use std::time::SystemTime;

use anyhow::{Context as _, bail};
use coder_license::keys::PRODUCTION_KEYS;
use coder_license::time::{format_unix_time, unix_seconds};
use coder_license::{Claims, FORMAT_VERSION, Features, sign};

use crate::IssueArgs;
use crate::key_files::read_signing_key;

const DAY_SECONDS: i64 = 86_400;

/// Issues the license `args` describe, signed with the key file, into `args.output`.
pub fn issue(args: &IssueArgs) -> anyhow::Result<()> {
    let key = read_signing_key(&args.key)?;
    match PRODUCTION_KEYS.iter().find(|trusted| trusted.kid == args.kid) {
        Some(trusted) if trusted.public_key != key.verifying_key().to_bytes() => {
            bail!(
                "{} is not the private key of kid `{}`",
                args.key.display(),
                args.kid
            )
        }
        Some(_) => {}
        None => eprintln!(
            "note: kid `{}` is not a production key: release builds of coder-install will refuse this license",
            args.kid
        ),
    }
    let claims = claims_from(args, unix_seconds(SystemTime::now()))?;
    let license = sign(&claims, &args.kid, &key)?;
    std::fs::write(&args.output, format!("{license}\n"))
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "issued {} license {} for {} ({} users, airgap {}), valid {} to {}, grace until {}: {}",
        claims.tier,
        claims.license_id,
        claims.account_name,
        claims.features.user_limit,
        claims.features.airgap,
        format_unix_time(claims.nbf),
        format_unix_time(claims.license_expires),
        format_unix_time(claims.grace_until),
        args.output.display()
    );
    Ok(())
}

/// The claims for `args`, issued at `now` (Unix seconds), with a fresh random license id.
fn claims_from(args: &IssueArgs, now: i64) -> anyhow::Result<Claims> {
    let account_id = match &args.account_id {
        Some(id) => id.clone(),
        None => slug(&args.account),
    };
    if account_id.is_empty() {
        bail!(
            "cannot derive an account id from `{}`: give --account-id",
            args.account
        );
    }
    let mut id_bytes = [0u8; 16];
    getrandom::fill(&mut id_bytes)
        .map_err(|error| anyhow::anyhow!("no randomness for a license id: {error}"))?;
    Ok(Claims {
        version: FORMAT_VERSION,
        license_id: format!("lic-{}", hex::encode(id_bytes)),
        account_name: args.account.clone(),
        account_id,
        tier: args.tier,
        features: Features {
            airgap: args.airgap,
            user_limit: args.users,
        },
        iat: now,
        nbf: args.not_before.unwrap_or(now),
        license_expires: args.expires,
        grace_until: args
            .expires
            .saturating_add(i64::from(args.grace_days) * DAY_SECONDS),
    })
}

/// `Example Corp.` → `example-corp`: lowercase ASCII letters and digits, runs of anything else
/// as one `-`, none at either end.
fn slug(name: &str) -> String {
    let lowered: String = name
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    lowered.split_whitespace().collect::<Vec<_>>().join("-")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use coder_license::Tier;

    use super::*;

    fn args() -> IssueArgs {
        IssueArgs {
            key: PathBuf::from("unused.key"),
            kid: "kid".to_owned(),
            tier: Tier::Enterprise,
            airgap: true,
            users: 25,
            expires: 1_798_761_600,
            grace_days: 30,
            account: "Example Corp.".to_owned(),
            account_id: None,
            not_before: None,
            output: PathBuf::from("unused.license"),
        }
    }

    #[test]
    fn claims_take_the_arguments_with_grace_in_days_and_defaults_from_now() {
        let claims = claims_from(&args(), 1_700_000_000).expect("claims");
        assert_eq!(claims.account_id, "example-corp");
        assert_eq!(claims.nbf, 1_700_000_000);
        assert_eq!(claims.iat, 1_700_000_000);
        assert_eq!(claims.grace_until, 1_798_761_600 + 30 * DAY_SECONDS);
        assert_eq!(
            claims.features,
            Features {
                airgap: true,
                user_limit: 25
            }
        );
        assert!(claims.license_id.starts_with("lic-") && claims.license_id.len() == 36);
        assert_ne!(
            claims.license_id,
            claims_from(&args(), 0).expect("claims").license_id
        );
    }

    #[test]
    fn an_account_name_without_letters_needs_an_explicit_id() {
        let mut args = args();
        args.account = "***".to_owned();
        assert!(claims_from(&args, 0).is_err());
        args.account_id = Some("acct-7".to_owned());
        assert_eq!(claims_from(&args, 0).expect("claims").account_id, "acct-7");
    }
}
