//! The distribution API's pull routes, parsed from a request path, and the grammar of names,
//! tags and digests. Anything that does not fit the grammar (`..`, `%2e`, upper case, empty
//! components) is refused here, before any lookup.

/// What a request path asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags(&'a str),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(&'a str, Reference<'a>),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(&'a str, &'a str),
    /// `/v2/<name>/blobs/uploads/...`: pushes, which this registry refuses.
    Upload,
    /// A repository name outside the grammar.
    InvalidName(&'a str),
    /// A digest outside the grammar.
    InvalidDigest(&'a str),
    /// A manifest reference that is neither a tag nor a digest.
    InvalidTag(&'a str),
    /// Not a route of the API.
    NotFound,
}

/// A manifest reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reference<'a> {
    /// A tag.
    Tag(&'a str),
    /// A digest.
    Digest(&'a str),
}

/// Parses a request path (without its query).
pub(crate) fn route<'a>(path: &'a str) -> Route<'a> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Route::NotFound;
    };
    let rest = match rest {
        "" | "/" => return Route::Base,
        _ => match rest.strip_prefix('/') {
            Some(rest) => rest,
            None => return Route::NotFound,
        },
    };
    if rest == "_catalog" {
        return Route::Catalog;
    }
    let named = |name: &'a str, then: Route<'a>| -> Route<'a> {
        if valid_name(name) {
            then
        } else {
            Route::InvalidName(name)
        }
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return named(name, Route::Tags(name));
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let reference = if reference.contains(':') {
            if !valid_digest(reference) {
                return named(name, Route::InvalidDigest(reference));
            }
            Reference::Digest(reference)
        } else if valid_tag(reference) {
            Reference::Tag(reference)
        } else {
            return named(name, Route::InvalidTag(reference));
        };
        return named(name, Route::Manifest(name, reference));
    }
    if let Some((name, _)) = rest.rsplit_once("/blobs/uploads") {
        return named(name, Route::Upload);
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        if !valid_digest(digest) {
            return named(name, Route::InvalidDigest(digest));
        }
        return named(name, Route::Blob(name, digest));
    }
    Route::NotFound
}

/// The distribution grammar of a repository name: `/`-separated components of lower-case
/// letters and digits, joined inside a component by `.`, `_`, `__` or runs of `-`; at most 255
/// characters.
pub(crate) fn valid_name(name: &str) -> bool {
    name.len() <= 255 && !name.is_empty() && name.split('/').all(valid_component)
}

fn valid_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let (Some(first), Some(last)) = (component.chars().next(), component.chars().last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Each run of separators must be `.`, `_`, `__` or dashes only.
    let mut separators = String::new();
    for c in component.chars() {
        if alnum(c) {
            let ok =
                matches!(separators.as_str(), "" | "." | "_" | "__") || separators.chars().all(|s| s == '-');
            if !ok {
                return false;
            }
            separators.clear();
        } else if matches!(c, '.' | '_' | '-') {
            separators.push(c);
        } else {
            return false;
        }
    }
    true
}

/// The grammar of a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub(crate) fn valid_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    tag.len() <= 128
        && tag.chars().next().is_some_and(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-')
}

/// The grammar of a digest: `algorithm:encoded`; a `sha256` one must be 64 lower-case hex digits.
pub(crate) fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    let encoded_ok = !encoded.is_empty()
        && encoded
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '_' | '-'));
    let sha256_ok = algorithm != "sha256"
        || (encoded.len() == 64
            && encoded
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    algorithm_ok && encoded_ok && sha256_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_pull_routes_parse_with_names_of_several_components() {
        assert_eq!(route("/v2/"), Route::Base);
        assert_eq!(route("/v2"), Route::Base);
        assert_eq!(route("/v2/_catalog"), Route::Catalog);
        assert_eq!(
            route("/v2/coder/team/app/tags/list"),
            Route::Tags("coder/team/app")
        );
        assert_eq!(
            route("/v2/coder/team/app/manifests/1.0"),
            Route::Manifest("coder/team/app", Reference::Tag("1.0"))
        );
        assert_eq!(
            route(&format!("/v2/a/manifests/{DIGEST}")),
            Route::Manifest("a", Reference::Digest(DIGEST))
        );
        assert_eq!(
            route(&format!("/v2/a/b/blobs/{DIGEST}")),
            Route::Blob("a/b", DIGEST)
        );
        assert_eq!(route("/v2/a/blobs/uploads/"), Route::Upload);
        assert_eq!(route("/v2/a/blobs/uploads/some-uuid"), Route::Upload);
        assert_eq!(route("/v2/a/blobs/uploads"), Route::Upload);
        // A repository may be called `manifests` or `blobs`.
        assert_eq!(
            route("/v2/manifests/manifests/latest"),
            Route::Manifest("manifests", Reference::Tag("latest"))
        );
    }

    #[test]
    fn escaping_and_malformed_paths_are_refused_by_the_grammar() {
        assert_eq!(route("/v2/../etc/tags/list"), Route::InvalidName("../etc"));
        assert_eq!(
            route(&format!("/v2/a/../b/blobs/{DIGEST}")),
            Route::InvalidName("a/../b")
        );
        assert_eq!(route("/v2/%2e%2e/tags/list"), Route::InvalidName("%2e%2e"));
        assert_eq!(route("/v2/a//b/tags/list"), Route::InvalidName("a//b"));
        assert_eq!(route("/v2/A/tags/list"), Route::InvalidName("A"));
        assert_eq!(
            route("/v2/a/blobs/sha256:../../x"),
            Route::InvalidDigest("sha256:../../x")
        );
        assert_eq!(
            route("/v2/a/blobs/sha256:abc"),
            Route::InvalidDigest("sha256:abc")
        );
        assert_eq!(route("/v2/a/manifests/.hidden"), Route::InvalidTag(".hidden"));
        assert_eq!(route("/v2/a/manifests/"), Route::InvalidTag(""));
        assert_eq!(route("/v3/"), Route::NotFound);
        assert_eq!(route("/v2x"), Route::NotFound);
        assert_eq!(route("/v2/a"), Route::NotFound);
    }

    #[test]
    fn names_follow_the_distribution_grammar() {
        for good in ["a", "library/db", "a.b_c__d---e/f", "0/1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a._b",
            "a___b",
            "a/",
            "/a",
            "a b",
            &"a".repeat(256),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(
            valid_digest("sha512:abc"),
            "other algorithms are well-formed (and unknown)"
        );
        assert!(!valid_digest(
            "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
        ));
        assert!(valid_tag("v1.0-rc_1") && !valid_tag(&"t".repeat(129)));
    }
}
