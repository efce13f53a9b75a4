//! `coder-install license inspect|verify FILE`: show and check a license offline.
//!
//! Both commands exit with the license error's own code (10 to 22, see
//! [`coder_license::ErrorKind`]) when the license is refused, and print the grace-period warning
//! on stderr while a license is past its term but still working. `inspect` shows what the file
//! says even when it is refused, labelled as unverified.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use coder_license::time::format_unix_time;
use coder_license::{Claims, DecodedToken, LicenseError, Standing, VerifiedLicense, check_airgap, verify};
use serde_json::json;

use crate::args::OutputFormat;

/// `coder-install license ...`.
#[derive(Debug, clap::Args)]
pub struct LicenseArgs {
    /// What to do with the license.
    #[command(subcommand)]
    pub command: LicenseCommand,
}

/// The `license` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LicenseCommand {
    /// Show a license: tier, features, account, validity window, and the verdict.
    ///
    /// Exits 0 for a license that works now (also in its grace period), otherwise with the
    /// refusal's exit code, as `verify` does.
    Inspect {
        /// The license file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Check a license's signature, format version and validity window; with --airgap, also
    /// that it allows air-gapped installs. Exits non-zero with a distinct code per failure.
    Verify {
        /// The license file.
        file: PathBuf,
        /// Also require that the license allows air-gapped installs (enterprise with the
        /// air-gap feature).
        #[arg(long)]
        airgap: bool,
    },
}

/// Runs a `license` subcommand.
pub fn run(args: &LicenseArgs) -> anyhow::Result<()> {
    match &args.command {
        LicenseCommand::Inspect { file, output } => inspect(file, *output),
        LicenseCommand::Verify { file, airgap } => verify_file(file, *airgap),
    }
}

fn read_license(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading license file {}", file.display()))
}

fn warn_if_in_grace(license: &VerifiedLicense) {
    if let Some(warning) = license.grace_warning() {
        eprintln!("{warning}");
    }
}

fn verify_file(file: &Path, airgap: bool) -> anyhow::Result<()> {
    let license = verify(&read_license(file)?)?;
    warn_if_in_grace(&license);
    if airgap {
        check_airgap(&license.claims)?;
    }
    let claims = &license.claims;
    println!(
        "license {} is valid: {} tier for {}, {} users, works until {}{}",
        claims.license_id,
        claims.tier,
        claims.account_name,
        claims.features.user_limit,
        format_unix_time(claims.grace_until),
        if airgap {
            "; air-gapped installs allowed"
        } else {
            ""
        }
    );
    Ok(())
}

/// What `inspect` knows about a file: the claims as written (when they decode) and the verdict.
struct Inspection {
    kid: Option<String>,
    claims: Option<Claims>,
    verdict: Result<VerifiedLicense, LicenseError>,
}

impl Inspection {
    fn of(license: &[u8]) -> Inspection {
        let decoded = DecodedToken::decode(license).ok();
        let kid = decoded.as_ref().map(|token| token.header.kid.clone());
        let claims = decoded.and_then(|token| token.claims().ok());
        Inspection {
            kid,
            claims,
            verdict: verify(license),
        }
    }

    fn verdict_text(&self) -> String {
        match &self.verdict {
            Ok(license) => match license.standing {
                Standing::Active => "VALID (within its term)".to_owned(),
                Standing::InGrace { stops_working_at, .. } => format!(
                    "VALID BUT EXPIRED: in its grace period, stops working on {}",
                    format_unix_time(stops_working_at)
                ),
            },
            Err(error) => format!("REFUSED: {error}"),
        }
    }

    /// Whether a verified license allows air-gapped installs; `None` when it is refused.
    fn airgap_verdict(&self) -> Option<Result<(), LicenseError>> {
        self.verdict
            .as_ref()
            .ok()
            .map(|license| check_airgap(&license.claims))
    }
}

fn inspect(file: &Path, output: OutputFormat) -> anyhow::Result<()> {
    let inspection = Inspection::of(&read_license(file)?);
    match output {
        OutputFormat::Text => print!("{}", inspection_text(&inspection)),
        OutputFormat::Json => println!("{:#}", inspection_json(&inspection)),
    }
    match inspection.verdict {
        Ok(license) => {
            warn_if_in_grace(&license);
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

fn inspection_text(inspection: &Inspection) -> String {
    let mut text = String::new();
    if let Some(claims) = &inspection.claims {
        let trust = if inspection.verdict.is_ok() {
            "verified"
        } else {
            "UNVERIFIED, as written in the file"
        };
        let airgap = match inspection.airgap_verdict() {
            Some(Ok(())) => "allowed".to_owned(),
            Some(Err(reason)) => format!("not allowed: {reason}"),
            None => "not allowed: the license is refused".to_owned(),
        };
        let rows = [
            (
                "license",
                format!(
                    "{} (format version {}, {trust})",
                    claims.license_id, claims.version
                ),
            ),
            (
                "account",
                format!("{} (id {})", claims.account_name, claims.account_id),
            ),
            ("tier", claims.tier.to_string()),
            ("user limit", claims.features.user_limit.to_string()),
            ("airgap feature", claims.features.airgap.to_string()),
            ("signing key", inspection.kid.clone().unwrap_or_default()),
            ("issued", format_unix_time(claims.iat)),
            ("valid from", format_unix_time(claims.nbf)),
            ("term ends", format_unix_time(claims.license_expires)),
            ("grace ends", format_unix_time(claims.grace_until)),
            ("air-gapped", airgap),
        ];
        for (label, value) in rows {
            text.push_str(&format!("{:<15} {value}\n", format!("{label}:")));
        }
    }
    text.push_str(&format!("{:<15} {}\n", "verdict:", inspection.verdict_text()));
    text
}

fn inspection_json(inspection: &Inspection) -> serde_json::Value {
    let verdict = match &inspection.verdict {
        Ok(license) => json!({
            "status": match license.standing {
                Standing::Active => "valid",
                Standing::InGrace { .. } => "grace",
            },
            "message": inspection.verdict_text(),
            "warning": license.grace_warning(),
            "exit_code": 0,
        }),
        Err(error) => json!({
            "status": "refused",
            "message": error.to_string(),
            "error_kind": error.kind().as_str(),
            "exit_code": error.exit_code(),
        }),
    };
    let airgap = inspection.airgap_verdict().map(|result| match result {
        Ok(()) => json!({ "allowed": true }),
        Err(reason) => json!({
            "allowed": false,
            "reason": reason.to_string(),
            "error_kind": reason.kind().as_str(),
        }),
    });
    let license = inspection.claims.as_ref().map(|claims| {
        json!({
            "license_id": claims.license_id,
            "format_version": claims.version,
            "verified": inspection.verdict.is_ok(),
            "kid": inspection.kid,
            "account": { "name": claims.account_name, "id": claims.account_id },
            "tier": claims.tier.as_str(),
            "features": { "airgap": claims.features.airgap, "user_limit": claims.features.user_limit },
            "validity": {
                "issued_at": format_unix_time(claims.iat),
                "not_before": format_unix_time(claims.nbf),
                "license_expires": format_unix_time(claims.license_expires),
                "grace_until": format_unix_time(claims.grace_until),
            },
        })
    });
    json!({ "license": license, "verdict": verdict, "airgap": airgap })
}
