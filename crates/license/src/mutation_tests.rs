//! Property-style robustness tests: thousands of random and mutated licenses thrown at the
//! parser and verifier (in addition to the `cargo fuzz` targets in `fuzz/`, which need nightly).
//! Properties: nothing panics, and no change to a genuine license's text is ever accepted.

use crate::claims::tests::{DAY, JAN_2027, enterprise_claims};
use crate::test_keys::{self, TEST_KEY, TEST_KEY_ID};
use crate::token::{DecodedToken, sign, sign_parts};
use crate::verify::verify_with_keys;
use crate::{Claims, check_airgap};

const NOW: i64 = JAN_2027 + 10 * DAY;

/// xorshift64*: a small deterministic generator, so a failure reproduces from its case number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound.max(1)).unwrap_or(1)).unwrap_or(0)
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \n";

fn check_does_not_panic(license: &[u8]) -> bool {
    let verdict = verify_with_keys(license, NOW, &[TEST_KEY]);
    if let Ok(token) = DecodedToken::decode(license) {
        let _ = token.claims().map_err(|error| error.to_string());
    }
    match verdict {
        Ok(verified) => {
            let _ = (verified.grace_warning(), check_airgap(&verified.claims));
            true
        }
        Err(error) => {
            let _ = (error.to_string(), error.exit_code());
            false
        }
    }
}

/// One random edit of `token`: flip a bit, replace, delete or insert bytes, truncate, or
/// shuffle the parts.
fn mutate(token: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = token.to_vec();
    if bytes.is_empty() {
        return vec![rng.byte()];
    }
    let position = rng.below(bytes.len());
    match rng.below(7) {
        0 => bytes[position] ^= 1 << rng.below(8),
        1 => bytes[position] = TOKEN_ALPHABET[rng.below(TOKEN_ALPHABET.len())],
        2 => {
            let end = (position + 1 + rng.below(20)).min(bytes.len());
            bytes.drain(position..end);
        }
        3 => {
            for _ in 0..=rng.below(4) {
                bytes.insert(position, rng.byte());
            }
        }
        4 => bytes.truncate(position),
        5 => {
            let mut parts: Vec<Vec<u8>> = bytes.split(|byte| *byte == b'.').map(<[u8]>::to_vec).collect();
            let (first, second) = (rng.below(parts.len()), rng.below(parts.len()));
            parts.swap(first, second);
            bytes = parts.join(&b'.');
        }
        _ => bytes.insert(position, b'.'),
    }
    bytes
}

#[test]
fn no_edit_of_a_genuine_license_is_accepted_and_none_panics() {
    let genuine = sign(&enterprise_claims(), TEST_KEY_ID, &test_keys::signing_key()).expect("sign");
    assert!(check_does_not_panic(genuine.as_bytes()));
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for case in 0..20_000 {
        let mut mutated = genuine.as_bytes().to_vec();
        for _ in 0..=rng.below(3) {
            mutated = mutate(&mutated, &mut rng);
        }
        let unchanged = std::str::from_utf8(&mutated).is_ok_and(|text| text.trim() == genuine);
        let accepted = check_does_not_panic(&mutated);
        assert!(
            !accepted || unchanged,
            "case {case}: an edited license was accepted: {:?}",
            String::from_utf8_lossy(&mutated)
        );
    }
}

#[test]
fn random_bytes_and_token_shaped_text_never_panic_or_pass() {
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    for case in 0..20_000 {
        let length = rng.below(400);
        let bytes: Vec<u8> = if case % 2 == 0 {
            (0..length).map(|_| rng.byte()).collect()
        } else {
            (0..length)
                .map(|_| TOKEN_ALPHABET[rng.below(TOKEN_ALPHABET.len())])
                .collect()
        };
        assert!(
            !check_does_not_panic(&bytes),
            "case {case}: random input accepted"
        );
    }
}

#[test]
fn mutated_claims_signed_with_the_trusted_key_never_panic() {
    // Reaches the claims parser and the time rules behind a valid signature.
    let json = serde_json::to_vec(&enterprise_claims()).expect("json");
    let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{TEST_KEY_ID}"}}"#);
    let key = test_keys::signing_key();
    let mut rng = Rng(0x5eed_1234_abcd_0003);
    let mut accepted = 0;
    for _ in 0..5_000 {
        let mutated = mutate(&json, &mut rng);
        let license = sign_parts(header.as_bytes(), &mutated, &key);
        if check_does_not_panic(license.as_bytes()) {
            accepted += 1;
            let claims = Claims::from_json(&mutated).expect("accepted claims parse");
            assert!(claims.validate().is_ok());
        }
    }
    // Most edits break the JSON; the property is about panics, this only shows both paths ran.
    assert!(accepted < 5_000);
}
