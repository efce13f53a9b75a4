//! Claims JSON (what a signed license could hold): parse, judge in time, check the tier rule,
//! render every message. Reaches the code behind the signature, which `verify_token` cannot.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|claims_json: &[u8]| {
    let claims = match coder_license::Claims::from_json(claims_json) {
        Ok(claims) => claims,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    for now in [i64::MIN, 0, claims.nbf, claims.license_expires, claims.grace_until, i64::MAX] {
        let _ = coder_license::verify::judge_time(&claims, now).map_err(|error| error.to_string());
    }
    let _ = coder_license::check_airgap(&claims).map_err(|error| error.to_string());
});
