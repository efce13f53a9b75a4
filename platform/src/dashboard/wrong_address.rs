//! Telling users they reached the dashboard at an address where their browser cannot keep its
//! cookies, and where to go instead: the notice on the login page, and the explanation that
//! replaces "Form expired" when a form arrives without the CSRF cookie at all.

use axum::http::{HeaderMap, header};

use super::access_url::AccessUrl;
use super::session::CsrfVerdict;

/// How a request reached the dashboard, as the browser saw it: the scheme (`X-Forwarded-Proto`
/// from the ingress, else plain HTTP, which is all the dashboard itself serves) and the
/// authority (`X-Forwarded-Host`, else `Host`), lower case. Used for messages only, never to
/// decide access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// Whether the browser used HTTPS.
    pub https: bool,
    /// `host` or `host:port` (a default port left out).
    pub authority: String,
}

impl Arrival {
    /// The arrival of a request with these headers.
    pub fn of(headers: &HeaderMap) -> Self {
        let first = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(',').next())
                .map(|value| value.trim().to_ascii_lowercase())
                .filter(|value| !value.is_empty())
        };
        let https = first("x-forwarded-proto").is_some_and(|proto| proto == "https");
        let authority = first("x-forwarded-host")
            .or_else(|| first(header::HOST.as_str()))
            .unwrap_or_default();
        let default_port = if https { ":443" } else { ":80" };
        let authority = authority
            .strip_suffix(default_port)
            .map(str::to_owned)
            .unwrap_or(authority);
        Self { https, authority }
    }

    /// The host without the port.
    fn host(&self) -> &str {
        if let Some(bracketed) = self.authority.strip_prefix('[') {
            return bracketed.split(']').next().unwrap_or_default();
        }
        self.authority.split(':').next().unwrap_or_default()
    }

    /// Whether browsers treat this plain-HTTP host as secure anyway and keep `Secure` cookies
    /// from it: `localhost`, `*.localhost`, `127.0.0.0/8` and `::1`.
    fn is_loopback_name(&self) -> bool {
        let host = self.host();
        host == "localhost"
            || host.ends_with(".localhost")
            || host == "::1"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// Why the browser cannot (or may not) keep the dashboard's cookies where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WrongAddress {
    /// The page came over plain HTTP (not from localhost) while cookies are `Secure`: the
    /// browser drops every cookie the dashboard sets.
    PlainHttpWithSecureCookies,
    /// The page came from another host than the access URL's.
    OtherHost {
        /// The host the browser used.
        seen: String,
    },
}

impl WrongAddress {
    /// What is wrong with `arrival`, if anything, given whether cookies are `Secure` and the
    /// access URL. Plain HTTP with `Secure` cookies comes first: it is certain to break sign-in.
    pub fn diagnose(secure_cookies: bool, access_url: Option<&AccessUrl>, arrival: &Arrival) -> Option<Self> {
        if secure_cookies && !arrival.https && !arrival.is_loopback_name() {
            return Some(Self::PlainHttpWithSecureCookies);
        }
        let access_url = access_url?;
        (!arrival.authority.is_empty() && arrival.authority != access_url.authority()).then(|| {
            Self::OtherHost {
                seen: arrival.authority.clone(),
            }
        })
    }

    /// The sentence naming where to go instead.
    fn go_there(access_url: Option<&AccessUrl>) -> String {
        match access_url {
            Some(url) => format!("The platform's address is {url} — open it there."),
            None => "Open the platform at its HTTPS address (ask your administrator to set the \
                     platform's access URL so that this page can name it)."
                .to_owned(),
        }
    }

    /// The notice on the login page, before the user types a password.
    pub fn notice(&self, access_url: Option<&AccessUrl>) -> String {
        let problem = match self {
            Self::PlainHttpWithSecureCookies => "This page was opened over plain HTTP, but the \
                 platform's cookies are HTTPS-only: your browser will not keep the sign-in cookie \
                 here, so logging in will fail."
                .to_owned(),
            Self::OtherHost { seen } => format!(
                "This page was opened at {seen}, which is not the platform's address: signing in \
                 here may fail or not last."
            ),
        };
        format!("{problem} {}", Self::go_there(access_url))
    }
}

/// The title and text of the page that answers a form post whose CSRF check failed: why, in
/// plain words. A missing cookie is explained by the address when that explains it; a cookie
/// that is there but does not match (or a post from another origin) is an expired form.
pub fn csrf_refusal(
    verdict: CsrfVerdict,
    wrong_address: Option<&WrongAddress>,
    access_url: Option<&AccessUrl>,
) -> (&'static str, String) {
    const EXPIRED: &str = "The form could not be verified (CSRF check). Reload the page and try again.";
    if verdict != CsrfVerdict::NoCookie {
        return ("Form expired", EXPIRED.to_owned());
    }
    let why = match wrong_address {
        Some(WrongAddress::PlainHttpWithSecureCookies) => {
            "Your browser did not keep this site's sign-in cookie: this page was opened over \
             plain HTTP, and the platform's cookies are HTTPS-only."
                .to_owned()
        }
        Some(WrongAddress::OtherHost { seen }) => format!(
            "Your browser did not keep this site's sign-in cookie: this page was opened at \
             {seen}, which is not the platform's address."
        ),
        None => {
            let mut text = "Your browser did not send this site's sign-in cookie (cookies may \
                            be blocked for this site). Allow cookies for it, reload the page and \
                            try again."
                .to_owned();
            if let Some(url) = access_url {
                text.push_str(&format!(" The platform's address is {url}."));
            }
            return ("Sign-in cookie missing", text);
        }
    };
    (
        "Sign-in cookie missing",
        format!("{why} {}", WrongAddress::go_there(access_url)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookies::test_headers;

    fn arrival(pairs: &[(&str, &str)]) -> Arrival {
        Arrival::of(&test_headers(pairs))
    }

    fn url(text: &str) -> AccessUrl {
        text.parse().expect("access URL")
    }

    #[test]
    fn the_arrival_prefers_the_ingress_headers() {
        assert_eq!(
            arrival(&[("host", "10.0.0.1:3000")]),
            Arrival {
                https: false,
                authority: "10.0.0.1:3000".to_owned()
            }
        );
        assert_eq!(
            arrival(&[
                ("host", "coder-dashboard:3000"),
                ("x-forwarded-host", "Coder.Example.com:443"),
                ("x-forwarded-proto", "https, http"),
            ]),
            Arrival {
                https: true,
                authority: "coder.example.com".to_owned()
            }
        );
    }

    #[test]
    fn plain_http_with_secure_cookies_is_wrong_except_on_loopback_names() {
        let https = url("https://coder.example.com");
        for host in ["coder.test:3000", "198.19.0.7:3000", "coder.example.com"] {
            assert_eq!(
                WrongAddress::diagnose(true, Some(&https), &arrival(&[("host", host)])),
                Some(WrongAddress::PlainHttpWithSecureCookies),
                "{host}"
            );
        }
        assert_eq!(
            WrongAddress::diagnose(true, None, &arrival(&[("host", "198.19.0.7:3000")])),
            Some(WrongAddress::PlainHttpWithSecureCookies)
        );
        for host in [
            "localhost:3000",
            "coder.localhost:8443",
            "127.0.0.1:3000",
            "[::1]:3000",
        ] {
            assert_eq!(
                WrongAddress::diagnose(true, None, &arrival(&[("host", host)])),
                None,
                "{host}"
            );
        }
        // Over HTTPS at the access URL's host: nothing to say.
        let through_ingress = arrival(&[("host", "coder.example.com"), ("x-forwarded-proto", "https")]);
        assert_eq!(WrongAddress::diagnose(true, Some(&https), &through_ingress), None);
    }

    #[test]
    fn another_host_than_the_access_urls_is_named() {
        let lab = url("http://coder.test:3000");
        assert_eq!(
            WrongAddress::diagnose(false, Some(&lab), &arrival(&[("host", "coder.test:3000")])),
            None
        );
        assert_eq!(
            WrongAddress::diagnose(false, Some(&lab), &arrival(&[("host", "198.19.0.7:3000")])),
            Some(WrongAddress::OtherHost {
                seen: "198.19.0.7:3000".to_owned()
            })
        );
        assert_eq!(
            WrongAddress::diagnose(
                true,
                Some(&url("https://coder.example.com")),
                &arrival(&[("host", "localhost:3000")])
            ),
            Some(WrongAddress::OtherHost {
                seen: "localhost:3000".to_owned()
            })
        );
    }

    #[test]
    fn each_refusal_says_why_in_plain_words() {
        let https = url("https://coder.example.com");
        let other = WrongAddress::OtherHost {
            seen: "198.19.0.7:3000".to_owned(),
        };
        let cases = [
            (
                CsrfVerdict::NoCookie,
                Some(&WrongAddress::PlainHttpWithSecureCookies),
                Some(&https),
            ),
            (
                CsrfVerdict::NoCookie,
                Some(&WrongAddress::PlainHttpWithSecureCookies),
                None,
            ),
            (CsrfVerdict::NoCookie, Some(&other), Some(&https)),
            (CsrfVerdict::NoCookie, None, Some(&https)),
            (CsrfVerdict::NoCookie, None, None),
            (
                CsrfVerdict::Mismatch,
                Some(&WrongAddress::PlainHttpWithSecureCookies),
                Some(&https),
            ),
            (CsrfVerdict::CrossOrigin, None, Some(&https)),
        ];
        let rendered: Vec<String> = cases
            .iter()
            .map(|(verdict, wrong, access)| {
                let (title, text) = csrf_refusal(*verdict, *wrong, *access);
                format!(
                    "{verdict:?} / {wrong:?} / {}\n  {title}: {text}",
                    access.map(AccessUrl::origin_url).unwrap_or_default()
                )
            })
            .collect();
        let expected = [
            "NoCookie / Some(PlainHttpWithSecureCookies) / https://coder.example.com/\n  Sign-in cookie missing: Your browser did not keep this site's sign-in cookie: this page was opened over plain HTTP, and the platform's cookies are HTTPS-only. The platform's address is https://coder.example.com/ — open it there.",
            "NoCookie / Some(PlainHttpWithSecureCookies) / \n  Sign-in cookie missing: Your browser did not keep this site's sign-in cookie: this page was opened over plain HTTP, and the platform's cookies are HTTPS-only. Open the platform at its HTTPS address (ask your administrator to set the platform's access URL so that this page can name it).",
            "NoCookie / Some(OtherHost { seen: \"198.19.0.7:3000\" }) / https://coder.example.com/\n  Sign-in cookie missing: Your browser did not keep this site's sign-in cookie: this page was opened at 198.19.0.7:3000, which is not the platform's address. The platform's address is https://coder.example.com/ — open it there.",
            "NoCookie / None / https://coder.example.com/\n  Sign-in cookie missing: Your browser did not send this site's sign-in cookie (cookies may be blocked for this site). Allow cookies for it, reload the page and try again. The platform's address is https://coder.example.com/.",
            "NoCookie / None / \n  Sign-in cookie missing: Your browser did not send this site's sign-in cookie (cookies may be blocked for this site). Allow cookies for it, reload the page and try again.",
            "Mismatch / Some(PlainHttpWithSecureCookies) / https://coder.example.com/\n  Form expired: The form could not be verified (CSRF check). Reload the page and try again.",
            "CrossOrigin / None / https://coder.example.com/\n  Form expired: The form could not be verified (CSRF check). Reload the page and try again.",
        ];
        assert_eq!(rendered, expected);
    }

    #[test]
    fn the_login_notice_names_the_address() {
        let https = url("https://coder.example.com");
        assert_eq!(
            WrongAddress::PlainHttpWithSecureCookies.notice(Some(&https)),
            "This page was opened over plain HTTP, but the platform's cookies are HTTPS-only: \
             your browser will not keep the sign-in cookie here, so logging in will fail. The \
             platform's address is https://coder.example.com/ — open it there."
        );
    }
}
