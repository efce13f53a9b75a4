//! What keeps credentials out of a support bundle: every value of every Secret of the namespace
//! (and its base64), masked wherever it appears, whatever the file; then what looks like a
//! credential by its shape: private keys, `Bearer` tokens, signed tokens (JWS), the password of
//! a URL, and the value of any field or parameter whose name says password, secret, token,
//! cookie, session or authorization.

use base64::Engine as _;

/// Values that must never leave, with a label for each (`secret NAME/KEY`).
#[derive(Debug, Default)]
pub struct Redactor {
    known: Vec<(String, String)>,
}

/// Names of fields whose values are credentials (compared in lower case).
const CREDENTIAL_NAMES: [&str; 8] = [
    "password",
    "passwd",
    "secret",
    "token",
    "cookie",
    "session",
    "authorization",
    "apikey",
];

/// Known values shorter than this are not masked alone (`true`, `1`, `coder`): they would mask
/// ordinary words everywhere; fields named as credentials are masked whatever their length.
const SHORTEST_KNOWN: usize = 6;

impl Redactor {
    /// Masks `value` (and its base64 encodings) wherever it appears, as `[REDACTED label]`.
    pub fn add_known(&mut self, value: &str, label: &str) {
        let value = value.trim();
        if value.len() < SHORTEST_KNOWN {
            return;
        }
        let engines = [
            base64::engine::general_purpose::STANDARD.encode(value),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value),
        ];
        for needle in std::iter::once(value.to_owned()).chain(engines) {
            if !self.known.iter().any(|(known, _)| *known == needle) {
                self.known.push((needle, label.to_owned()));
            }
        }
        // Longest first, so that a value containing another is masked whole.
        self.known
            .sort_by_key(|(needle, _)| std::cmp::Reverse(needle.len()));
    }

    /// `text` with every credential masked, and how many were.
    pub fn redact(&self, text: &str) -> (String, usize) {
        let mut count = 0;
        let mut text = text.to_owned();
        for (needle, label) in &self.known {
            let found = text.matches(needle.as_str()).count();
            if found > 0 {
                count += found;
                text = text.replace(needle.as_str(), &format!("[REDACTED {label}]"));
            }
        }
        let (text, private_keys) = mask_private_keys(&text);
        let (text, shaped) = mask_by_shape(&text);
        (text, count + private_keys + shaped)
    }
}

/// PEM private key blocks, whole.
fn mask_private_keys(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut count = 0;
    while let Some(start) = rest.find("-----BEGIN") {
        let header_end = rest[start..]
            .find("-----\n")
            .or_else(|| rest[start + 10..].find("-----").map(|at| at + 10));
        let is_private = header_end.is_some_and(|end| rest[start..start + end].contains("PRIVATE KEY"));
        if !is_private {
            out.push_str(&rest[..start + 10]);
            rest = &rest[start + 10..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after
            .find("-----END")
            .and_then(|end| after[end + 8..].find("-----").map(|close| end + 8 + close + 5))
            .unwrap_or(after.len());
        out.push_str("[REDACTED private key]");
        count += 1;
        rest = &after[end..];
    }
    out.push_str(rest);
    (out, count)
}

/// Word by word: `Bearer X`, signed tokens, URL passwords, and `name=value` / `"name": "value"`
/// where the name says credential.
fn mask_by_shape(text: &str) -> (String, usize) {
    let mut count = 0;
    let mut out = String::with_capacity(text.len());
    let mut mask_next = false;
    for piece in text.split_inclusive(|c: char| c.is_whitespace()) {
        let word = piece.trim_end();
        let space = &piece[word.len()..];
        let lower = word.to_ascii_lowercase();
        // The scheme of an Authorization value: the credential is the word after it.
        if matches!(lower.trim_start_matches('"'), "bearer" | "basic") {
            mask_next = true;
            out.push_str(piece);
            continue;
        }
        if mask_next && !word.is_empty() {
            mask_next = false;
            if let Some(masked) = mask_value(word) {
                out.push_str(&masked);
                out.push_str(space);
                count += 1;
                continue;
            }
        }
        let (masked, found) = mask_word(word);
        count += found;
        // A name with its value after a separator space (`"password": "x"`, `token: x`).
        mask_next =
            found == 0 && names_a_credential(&lower) && (lower.ends_with(':') || lower.ends_with("\":"));
        out.push_str(&masked);
        out.push_str(space);
    }
    (out, count)
}

/// A value after its name: a JSON string keeps its quotes and what follows them, a bare word
/// its trailing punctuation; an object or a list is structure, not a value, and is left.
fn mask_value(word: &str) -> Option<String> {
    if word.starts_with(['{', '[']) {
        return None;
    }
    if let Some(rest) = word.strip_prefix('"') {
        let close = rest.rfind('"')?;
        return Some(format!("\"[REDACTED]\"{}", &rest[close + 1..]));
    }
    let value = word.trim_end_matches([',', ';']);
    // `true`, `false`, `null` and numbers are settings, not credentials.
    if matches!(value, "true" | "false" | "null") || value.parse::<f64>().is_ok() {
        return None;
    }
    Some(format!("[REDACTED]{}", &word[value.len()..]))
}

/// One word: a signed token, a URL with a password, or `name=value` pairs.
fn mask_word(word: &str) -> (String, usize) {
    if looks_like_jws(word) {
        return ("[REDACTED token]".to_owned(), 1);
    }
    if let Some((scheme_end, at)) = url_password(word) {
        return (format!("{}[REDACTED]{}", &word[..scheme_end], &word[at..]), 1);
    }
    let mut count = 0;
    let mut out = String::with_capacity(word.len());
    for part in word.split_inclusive(['&', ';', ',', '?']) {
        match part.split_once('=') {
            Some((name, value)) if names_a_credential(&name.to_ascii_lowercase()) && !value.is_empty() => {
                let tail = value.trim_end_matches(['&', ';', ',', '?']);
                out.push_str(name);
                out.push_str("=[REDACTED]");
                out.push_str(&value[tail.len()..]);
                count += 1;
            }
            _ => out.push_str(part),
        }
    }
    (out, count)
}

/// Whether a field or parameter name says its value is a credential; one that names where a
/// credential is (`secretName`, `PASSWORD_FILE`, `secretKeyRef`, a mount path) does not.
fn names_a_credential(name: &str) -> bool {
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-');
    let names_a_place = ["name", "ref", "file", "path", "dir"]
        .iter()
        .any(|place| name.ends_with(place));
    !names_a_place
        && CREDENTIAL_NAMES
            .iter()
            .any(|credential| name.contains(credential))
}

/// `header.payload.signature`, each base64url, the header a JSON object (`eyJ`).
fn looks_like_jws(word: &str) -> bool {
    let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_' && c != '.');
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|part| {
            part.len() >= 8
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// In `scheme://user:password@host`, where the password starts and the `@` is.
fn url_password(word: &str) -> Option<(usize, usize)> {
    let scheme = word.find("://")? + 3;
    let at = scheme + word[scheme..].find('@')?;
    let colon = scheme + word[scheme..at].find(':')?;
    (colon + 1 < at).then_some((colon + 1, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(redactor: &Redactor, text: &str) -> String {
        redactor.redact(text).0
    }

    #[test]
    fn known_values_and_their_base64_are_masked_everywhere() {
        let mut redactor = Redactor::default();
        redactor.add_known("s3cret-admin-password", "secret coder-admin-password/password");
        redactor.add_known("ok", "secret short/value");
        let encoded = base64::engine::general_purpose::STANDARD.encode("s3cret-admin-password");
        let text = format!("login with s3cret-admin-password; data: {encoded}; ok fine");
        let (out, count) = redactor.redact(&text);
        assert!(
            !out.contains("s3cret-admin-password") && !out.contains(&encoded),
            "{out}"
        );
        assert!(
            out.contains("[REDACTED secret coder-admin-password/password]"),
            "{out}"
        );
        assert!(out.contains("ok fine"), "short values are left alone: {out}");
        assert_eq!(count, 2);
    }

    #[test]
    fn credentials_are_masked_by_their_shape() {
        let redactor = Redactor::default();
        let jws = "eyJhbGciOiJFZERTQSJ9.eyJ0aWVyIjoiZW50ZXJwcmlzZSJ9.c2lnbmF0dXJlLWJ5dGVz";
        for (text, leaked) in [
            ("Authorization: Bearer abc.def-123", "abc.def-123"),
            ("cookie=coder_session=0123456789abcdef", "0123456789abcdef"),
            ("url=postgres://coder:hunter2pass@db:5432/coder", "hunter2pass"),
            ("{\"password\": \"pa55word!\"}", "pa55word!"),
            (jws, "c2lnbmF0dXJlLWJ5dGVz"),
            (
                "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n",
                "MIIEvQIBADANBg",
            ),
            ("GET /login?next=/&session_token=zzz123zzz HTTP/1.1", "zzz123zzz"),
        ] {
            let out = redacted(&redactor, text);
            assert!(!out.contains(leaked), "{text:?} -> {out:?}");
        }
        // Where a credential is kept is not a credential; structure stays valid JSON.
        let places =
            "{\"secretName\": \"coder-db-password\", \"CODER_PG_PASSWORD_FILE\": \"/run/secrets/x\"}";
        assert_eq!(redacted(&redactor, places), places);
        let object = "\"secret\": {\n  \"defaultMode\": 420\n}";
        assert_eq!(redacted(&redactor, object), object);
        assert_eq!(
            redacted(&redactor, "{\"token\": \"abc\", \"n\": 1}"),
            "{\"token\": \"[REDACTED]\", \"n\": 1}"
        );
        let setting = "\"automountServiceAccountToken\": false,";
        assert_eq!(redacted(&redactor, setting), setting);
        // Certificates and ordinary words stay.
        let certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert_eq!(redacted(&redactor, certificate), certificate);
        assert_eq!(
            redacted(&redactor, "pod coder-manager restarted 3 times"),
            "pod coder-manager restarted 3 times"
        );
    }
}
