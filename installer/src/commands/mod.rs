//! The implementations of `coder-install` subcommands, one module each, and the exit code an
//! error maps to.

use coder_license::LicenseError;

pub mod license;

/// The process exit code for a failed command: a license error's own code (see
/// [`coder_license::ErrorKind::exit_code`]), anywhere in the error's chain; 1 for anything else.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<LicenseError>())
        .map_or(1, LicenseError::exit_code)
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
