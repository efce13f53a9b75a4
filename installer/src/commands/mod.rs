//! One module per subcommand: each turns parsed arguments into calls to the library and prints
//! the result, as text or JSON; and the exit code an error maps to.

pub mod allowlist;
pub mod apply;
pub mod backup;
pub mod bundle;
pub mod check;
pub mod inspect;
pub mod inventory;
pub mod license;
pub mod lock;
pub mod node_config;
pub mod preflight;
pub mod push;
pub mod rollback;
pub mod serve;
pub mod status;
pub mod support_bundle;
pub mod template;
pub mod uninstall;
pub mod verify;

use coder_license::LicenseError;

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

    #[test]
    fn a_license_refused_inside_the_apply_pipeline_keeps_its_code() {
        use coder_deploy::DeployError;
        use coder_deploy::license_gate::LicenseGateError;
        let missing = DeployError::from(LicenseGateError::Missing {
            undone: "nothing was pushed or applied",
            refusal: LicenseError::AirgapNotAllowedForTier {
                tier: coder_license::Tier::Free,
            },
        });
        let error = anyhow::Error::new(missing);
        assert_eq!(exit_code(&error), 21);
        let text = format!("{error:#}");
        assert!(
            text.starts_with("no --license given, so this is the free tier; nothing was pushed or applied: "),
            "{text}"
        );
        let refused = DeployError::from(LicenseGateError::Refused {
            path: "site.license".into(),
            undone: "nothing was pushed or applied",
            refusal: LicenseError::AirgapFeatureMissing,
        });
        assert_eq!(exit_code(&anyhow::Error::new(refused)), 22);
    }
}
