//! Coder licenses: compact, Ed25519-signed tokens verified offline against public keys compiled
//! into the binary, with time rules and the tier rule for air-gapped installs.
//!
//! # Format
//!
//! A license file holds one line, a compact JWS (RFC 7515, Ed25519 per RFC 8037):
//! `base64url(header).base64url(claims).base64url(signature)`, unpadded, with the header
//! `{"alg":"EdDSA","typ":"JWT","kid":"..."}`. Any `alg` other than `EdDSA` (`none`, `HS256`,
//! ...) is refused before the signature is looked at, so algorithm confusion is impossible; so is
//! a `crit` header. The claims ([`Claims`]) are `version`, `license_id`, `account_name`,
//! `account_id`, `tier` (`free`, `trial`, `enterprise`), `features` (`airgap`, `user_limit`),
//! `iat`, `nbf`, `license_expires` (end of term) and `grace_until` (end of grace), times in Unix
//! seconds.
//!
//! **Versions and unknown fields.** `version` is read first: a license in a format newer than
//! [`FORMAT_VERSION`] is refused with "upgrade coder-install". Unknown claim fields are ignored
//! (no `deny_unknown_fields`), so the issuer can add informational fields without breaking
//! deployed installers; anything that changes how a license is judged bumps the version.
//!
//! # Verification
//!
//! [`verify_at`] (or [`verify`], at the current time) checks the signature with
//! `ed25519_dalek::VerifyingKey::verify_strict` against the trusted key the header's `kid`
//! names. The trusted keys are compiled in at build time ([`keys::PRODUCTION_KEYS`], generated
//! by `build.rs` from every `keys/KID.pub` file, the kid being the file name, so keys rotate by
//! `kid` and a vendor adds its own key by adding a file); **no flag, environment variable or
//! file can add one at run time**. The vendor's private keys are never committed.
//!
//! Time rules (see [`verify`](mod@verify)): not yet valid is refused; past `license_expires`
//! but before `grace_until` is accepted with a loud warning naming when it stops working
//! ([`VerifiedLicense::grace_warning`]); past grace is refused. Every bound allows
//! [`CLOCK_SKEW_SECONDS`] (5 minutes) of clock skew in the holder's favour.
//!
//! Air-gapped installs additionally need [`check_airgap`]: `free` and `trial` never allow
//! them, `enterprise` only with `features.airgap`.
//!
//! Every failure is a [`LicenseError`] variant with a message saying what is wrong and what to
//! do, and a stable [`ErrorKind`] with an exit code for the command line.
//!
//! # The `test-keys` feature
//!
//! Tests need licenses they can sign. The cargo feature **`test-keys`** adds the module
//! [`test_keys`] (the TEST-ONLY key pair committed in `crates/license/test-keys/`, private half
//! included) and makes [`keys::trusted_keys`] trust its public key. The installer enables it
//! from its `[dev-dependencies]`, so `cargo test` builds of `coder-install` trust it while
//! `cargo build --release -p coder-install` does not. As a second guard, this crate refuses to
//! compile with `test-keys` when debug assertions are off (any `--release` build, and a plain
//! `cargo bench`). The benches run with `cargo benches` (profile `bench-test-keys`: optimised,
//! debug assertions on, built into `target/bench-test-keys`), so a binary that trusts the test
//! key never lands in `target/release`.
//! `cargo test -p coder-license` run on its own checks that, without the feature, the trusted
//! keys are exactly the production keys.

#[cfg(all(feature = "test-keys", not(debug_assertions)))]
compile_error!(
    "the `test-keys` feature trusts a publicly known signing key: it is for tests only and must never \
     be enabled in a release build; run the benches with `cargo benches` (their own profile and \
     directory), not `cargo bench`"
);

pub mod airgap;
pub mod claims;
pub mod error;
pub mod keys;
#[cfg(test)]
mod mutation_tests;
#[cfg(any(test, feature = "test-keys"))]
pub mod test_keys;
pub mod time;
pub mod token;
pub mod verify;

pub use airgap::check_airgap;
/// The Ed25519 private key type [`sign`] takes, re-exported so that signers need not depend on
/// the same `ed25519-dalek` version themselves.
pub use ed25519_dalek::SigningKey;

pub use claims::{Claims, FORMAT_VERSION, Features, Tier};
pub use error::{ErrorKind, LicenseError};
pub use token::{DecodedToken, Header, sign};
pub use verify::{CLOCK_SKEW_SECONDS, Standing, VerifiedLicense, verify, verify_at};
