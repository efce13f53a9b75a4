//! Whole license files: decode, verify against the compiled-in keys, render every message.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|license: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    match coder_license::verify_at(license, now) {
        Ok(verified) => {
            let _ = verified.grace_warning();
            let _ = coder_license::check_airgap(&verified.claims);
        }
        Err(error) => {
            let _ = (error.to_string(), error.exit_code());
        }
    }
    if let Ok(token) = coder_license::DecodedToken::decode(license) {
        let _ = token.claims().map_err(|error| error.to_string());
    }
});
