//! The compact token: `base64url(header).base64url(claims).base64url(signature)`, unpadded, with
//! the header `{"alg":"EdDSA","typ":"JWT","kid":"..."}` (a JWS as in RFC 7515, Ed25519 per RFC 8037).
//!
//! Decoding checks the structure and the header, and refuses any algorithm but EdDSA before it
//! looks at the signature. It does not check the signature: see [`crate::verify`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{SIGNATURE_LENGTH, Signature, Signer as _, SigningKey};
use serde::{Deserialize, Serialize};

use crate::claims::Claims;
use crate::error::{LicenseError, Part};

/// The only signing algorithm accepted: Ed25519, named as JOSE names it.
pub const ALGORITHM: &str = "EdDSA";

/// The `typ` header the issuer writes.
pub const TOKEN_TYPE: &str = "JWT";

/// Length of the unpadded base64url text of a 64-byte signature.
const SIGNATURE_TEXT_LENGTH: usize = 86;

/// The JOSE header of a license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The signing algorithm; always [`ALGORITHM`] once decoded.
    pub alg: String,
    /// The token type; the issuer writes [`TOKEN_TYPE`], readers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// The id of the key that signed the license, which selects the trusted key to verify with.
    pub kid: String,
}

/// The header as found, before its fields are checked.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// A structurally sound token whose header allows EdDSA: not yet verified, not yet trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedToken {
    /// The checked header.
    pub header: Header,
    /// The decoded claims bytes (JSON, not parsed yet).
    pub claims_json: Vec<u8>,
    /// The signature.
    pub signature: Signature,
    /// The bytes the signature covers: `base64url(header).base64url(claims)`.
    pub signing_input: String,
}

impl DecodedToken {
    /// Decodes a license file's bytes (surrounding whitespace is ignored).
    ///
    /// Order: UTF-8 text, three parts, header base64 and JSON, algorithm (anything but EdDSA is
    /// refused here), no `crit` extensions, a key id, then the signature's size and base64, then
    /// the claims' base64 and UTF-8. The claims JSON is parsed by [`DecodedToken::claims`].
    pub fn decode(license: &[u8]) -> Result<DecodedToken, LicenseError> {
        let text = std::str::from_utf8(license).map_err(|_| LicenseError::NotUtf8 { part: Part::File })?;
        let text = text.trim();
        if text.is_empty() {
            return Err(malformed("the file is empty"));
        }
        let parts: Vec<&str> = text.split('.').collect();
        let [header_text, claims_text, signature_text] = parts[..] else {
            return Err(malformed(&format!(
                "it has {} dot-separated part(s) instead of 3 (header, claims, signature)",
                parts.len()
            )));
        };
        let header = decode_header(header_text)?;
        if signature_text.len() != SIGNATURE_TEXT_LENGTH {
            return Err(malformed(&format!(
                "its signature part is {} characters long instead of {SIGNATURE_TEXT_LENGTH}",
                signature_text.len()
            )));
        }
        let signature_bytes = decode_part(signature_text, Part::Signature)?;
        let signature_array: [u8; SIGNATURE_LENGTH] = signature_bytes
            .try_into()
            .map_err(|_| malformed("its signature does not decode to 64 bytes"))?;
        let claims_json = decode_part(claims_text, Part::Claims)?;
        std::str::from_utf8(&claims_json).map_err(|_| LicenseError::NotUtf8 { part: Part::Claims })?;
        Ok(DecodedToken {
            header,
            claims_json,
            signature: Signature::from_bytes(&signature_array),
            signing_input: format!("{header_text}.{claims_text}"),
        })
    }

    /// Parses the claims (see [`Claims::from_json`]). Unverified: trust them only through
    /// [`crate::verify_at`].
    pub fn claims(&self) -> Result<Claims, LicenseError> {
        Claims::from_json(&self.claims_json)
    }
}

fn malformed(detail: &str) -> LicenseError {
    LicenseError::Malformed {
        detail: detail.to_owned(),
    }
}

fn decode_part(text: &str, part: Part) -> Result<Vec<u8>, LicenseError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|error| LicenseError::BadBase64 {
            part,
            detail: error.to_string(),
        })
}

fn decode_header(text: &str) -> Result<Header, LicenseError> {
    let bytes = decode_part(text, Part::Header)?;
    std::str::from_utf8(&bytes).map_err(|_| LicenseError::NotUtf8 { part: Part::Header })?;
    let raw: RawHeader = serde_json::from_slice(&bytes).map_err(|error| LicenseError::BadJson {
        part: Part::Header,
        detail: error.to_string(),
    })?;
    let alg = raw.alg.unwrap_or_else(|| "(missing)".to_owned());
    if alg != ALGORITHM {
        return Err(LicenseError::UnsupportedAlgorithm { alg });
    }
    if raw.crit.is_some() {
        return Err(LicenseError::BadJson {
            part: Part::Header,
            detail: "it has a `crit` header, and no critical extension is supported".to_owned(),
        });
    }
    let kid = raw.kid.ok_or_else(|| LicenseError::UnknownKid {
        kid: "(missing)".to_owned(),
    })?;
    Ok(Header {
        alg,
        typ: raw.typ,
        kid,
    })
}

/// Encodes bytes as one unpadded base64url token part.
pub fn encode_part(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs arbitrary header and claims JSON with `key`: the low-level half of [`sign`], for
/// tools and tests that need exact bytes (for example a header with another `alg`).
pub fn sign_parts(header_json: &[u8], claims_json: &[u8], key: &SigningKey) -> String {
    let signing_input = format!("{}.{}", encode_part(header_json), encode_part(claims_json));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", encode_part(&signature.to_bytes()))
}

/// Issues a license: checks the claims ([`Claims::validate`]), then signs them with `key` under
/// the header `{"alg":"EdDSA","typ":"JWT","kid":kid}`.
pub fn sign(claims: &Claims, kid: &str, key: &SigningKey) -> Result<String, LicenseError> {
    claims.validate()?;
    let header = Header {
        alg: ALGORITHM.to_owned(),
        typ: Some(TOKEN_TYPE.to_owned()),
        kid: kid.to_owned(),
    };
    let to_json = |value: serde_json::Result<Vec<u8>>, part| {
        value.map_err(|error| LicenseError::BadJson {
            part,
            detail: error.to_string(),
        })
    };
    let header_json = to_json(serde_json::to_vec(&header), Part::Header)?;
    let claims_json = to_json(serde_json::to_vec(claims), Part::Claims)?;
    Ok(sign_parts(&header_json, &claims_json, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::tests::enterprise_claims;
    use crate::error::ErrorKind;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn token() -> String {
        sign(&enterprise_claims(), "kid-1", &key()).expect("sign")
    }

    fn kind_of(license: &[u8]) -> ErrorKind {
        DecodedToken::decode(license).expect_err("refused").kind()
    }

    #[test]
    fn a_signed_token_decodes_to_its_header_and_claims() {
        let decoded = DecodedToken::decode(format!("\n  {}\n", token()).as_bytes()).expect("decodes");
        assert_eq!(decoded.header.alg, "EdDSA");
        assert_eq!(decoded.header.typ.as_deref(), Some("JWT"));
        assert_eq!(decoded.header.kid, "kid-1");
        assert_eq!(decoded.claims(), Ok(enterprise_claims()));
    }

    #[test]
    fn empty_truncated_and_extra_parts_are_malformed() {
        let token = token();
        assert_eq!(kind_of(b""), ErrorKind::Malformed);
        assert_eq!(kind_of(b" \n"), ErrorKind::Malformed);
        for cut in [10, token.len() / 2, token.len() - 1, token.len() - 40] {
            assert_eq!(
                kind_of(&token.as_bytes()[..cut]),
                ErrorKind::Malformed,
                "cut at {cut}"
            );
        }
        assert_eq!(kind_of(format!("{token}.extra").as_bytes()), ErrorKind::Malformed);
    }

    #[test]
    fn non_utf8_files_and_parts_are_refused_as_such() {
        let mut bytes = token().into_bytes();
        bytes[5] = 0xff;
        assert_eq!(
            DecodedToken::decode(&bytes).expect_err("not utf8"),
            LicenseError::NotUtf8 { part: Part::File }
        );
        let latin1_header = sign_parts(b"{\"alg\":\"EdDSA\",\"kid\":\"\xe9\"}", b"{}", &key());
        assert_eq!(
            DecodedToken::decode(latin1_header.as_bytes()).expect_err("not utf8"),
            LicenseError::NotUtf8 { part: Part::Header }
        );
    }

    #[test]
    fn bad_base64_is_refused_naming_the_part() {
        let token = token();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1].replace_range(0..1, "*");
        let error = DecodedToken::decode(parts.join(".").as_bytes()).expect_err("bad base64");
        assert!(
            matches!(
                error,
                LicenseError::BadBase64 {
                    part: Part::Claims,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn header_that_is_not_json_is_bad_json() {
        let token = sign_parts(b"not json", b"{}", &key());
        assert_eq!(kind_of(token.as_bytes()), ErrorKind::BadJson);
    }

    #[test]
    fn any_algorithm_but_eddsa_is_refused_before_the_signature_is_read() {
        for header in [
            r#"{"alg":"none","kid":"kid-1"}"#,
            r#"{"alg":"HS256","kid":"kid-1"}"#,
            r#"{"alg":"RS256","kid":"kid-1"}"#,
            r#"{"alg":"eddsa","kid":"kid-1"}"#,
            r#"{"kid":"kid-1"}"#,
        ] {
            // An `alg: none` token has an empty signature: still refused for its algorithm.
            let unsigned = format!("{}.{}.", encode_part(header.as_bytes()), encode_part(b"{}"));
            assert_eq!(
                kind_of(unsigned.as_bytes()),
                ErrorKind::UnsupportedAlgorithm,
                "{header}"
            );
        }
    }

    #[test]
    fn critical_extensions_are_refused_and_a_missing_kid_is_unknown() {
        let crit = sign_parts(br#"{"alg":"EdDSA","kid":"k","crit":["exp"]}"#, b"{}", &key());
        assert_eq!(kind_of(crit.as_bytes()), ErrorKind::BadJson);
        let no_kid = sign_parts(br#"{"alg":"EdDSA"}"#, b"{}", &key());
        assert_eq!(kind_of(no_kid.as_bytes()), ErrorKind::UnknownKid);
    }

    #[test]
    fn signing_refuses_invalid_claims() {
        let mut claims = enterprise_claims();
        claims.features.user_limit = 0;
        assert_eq!(
            sign(&claims, "kid-1", &key()).expect_err("invalid").kind(),
            ErrorKind::InvalidClaims
        );
    }
}
