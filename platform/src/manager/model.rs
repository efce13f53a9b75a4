//! The rules the fields of the manager's objects follow (the objects themselves, as the API
//! shows them, are [`crate::api_types`]).

use super::error::{ApiError, ApiResult};

/// Checks that `name` is a DNS-1123 label (lowercase alphanumerics and `-`, 1 to 63 long,
/// starting and ending alphanumeric), as workspace names must be.
pub fn validate_dns_label(field: &'static str, name: &str) -> ApiResult<()> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| alnum(c) || c == '-')
        && name.starts_with(alnum)
        && name.ends_with(alnum);
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            format!("{field} must be a DNS-1123 label"),
            "1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit",
        ))
    }
}

/// Checks an email address's shape (one `@`, a dot in the domain, no white space or controls).
pub fn validate_email(email: &str) -> ApiResult<()> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_email",
            "email is not a valid address",
            "expected local@domain.tld",
        ))
    }
}

/// Checks a display name: 1 to 128 characters, no control characters.
pub fn validate_display_name(name: &str) -> ApiResult<()> {
    let length = name.trim().chars().count();
    if (1..=128).contains(&length) && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1 to 128 characters without control characters",
            "field: name",
        ))
    }
}

/// Passwords so common that no length rule catches them.
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "passw0rd",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyuiop",
    "qwerty123",
    "iloveyou",
    "letmein1",
    "11111111",
    "00000000",
    "abcdefgh",
    "abc12345",
    "admin123",
    "welcome1",
    "changeme",
];

/// Refuses empty, short, repetitive, common or email-equal passwords (400 `weak_password`).
pub fn validate_password(password: &str, email: &str) -> ApiResult<()> {
    let weak = |reason: &str| {
        Err(ApiError::bad_request(
            "weak_password",
            "the password is too weak",
            reason.to_owned(),
        ))
    };
    let length = password.chars().count();
    if length < 10 {
        return weak("use at least 10 characters");
    }
    if length > 256 {
        return weak("use at most 256 characters");
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 5 {
        return weak("use at least 5 different characters");
    }
    let lower = password.to_lowercase();
    if COMMON_PASSWORDS.iter().any(|common| lower.starts_with(common)) || lower == email.to_lowercase() {
        return weak("the password is too common or equals the email address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["a", "dev", "my-ws-1", &"a".repeat(63)] {
            assert!(validate_dns_label("name", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a b",
            "é",
            &"a".repeat(64),
            "x'; DROP TABLE",
        ] {
            assert!(validate_dns_label("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(validate_password("correct horse battery", "a@b.co").is_ok());
        for weak in [
            "",
            "short",
            "aaaaaaaaaaaa",
            "password123",
            "Password1234",
            "ababababab",
        ] {
            assert!(validate_password(weak, "a@b.co").is_err(), "{weak}");
        }
        assert!(validate_password("someone@example.com", "Someone@example.com").is_err());
    }

    #[test]
    fn emails() {
        assert!(validate_email("o'brien+x@example.co.uk").is_ok());
        for bad in ["", "a", "a@b", "@b.c", "a@@b.c", "a b@c.d", "a@.c", "a@c."] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }
}
