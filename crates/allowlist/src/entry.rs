//! A site's allowlist: the file format, each entry's meaning, and what is wrong with an entry.
//!
//! One entry a line, `#` starting a comment (a whole line, or after whitespace):
//!
//! | entry                        | allows                                                     |
//! |------------------------------|------------------------------------------------------------|
//! | `registry-1.docker.io`       | that host, any port                                        |
//! | `registry-1.docker.io:443`   | that host, that port                                       |
//! | `*.docker.io`                | every name under `docker.io` (not `docker.io` itself)      |
//! | `https://ghcr.io/v2/`        | that scheme, host, port (443 by default) and path prefix   |
//! | `203.0.113.7`, `[2001:db8::1]:443` | that address (and port)                              |
//! | `10.0.0.0/8`, `2001:db8::/32` | that network                                              |
//!
//! The same entries may come as a YAML or JSON list of strings instead. Host names are
//! compared in lower-case ASCII: an internationalised name is converted to its punycode form
//! (`bücher.example` is `xn--bcher-kva.example`). Parsing never fails as a whole: each entry
//! that cannot be read becomes a [`Malformed`] line, and the others are still audited.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Where an entry was written: a line of a text allowlist, or an item of a YAML or JSON list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Location {
    /// Line N (from 1) of a text allowlist.
    Line(usize),
    /// Item N (from 1) of a YAML or JSON list.
    Item(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(number) => write!(f, "line {number}"),
            Self::Item(number) => write!(f, "item {number}"),
        }
    }
}

/// A host name pattern of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this host (lower-case ASCII).
    Exact(String),
    /// Every name under this domain, at any depth, but not the domain itself (`*.example.com`).
    Subdomains(String),
    /// Every host (`*`).
    Any,
}

impl HostPattern {
    /// Whether every host matched by `required` (a host name, or a `*.domain` pattern the
    /// install documents) is matched by this pattern.
    pub fn covers(&self, required: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(host) => host == required,
            Self::Subdomains(domain) => match required.strip_prefix("*.") {
                // A family `*.pkg.dev` is covered by `*.pkg.dev` or by a wildcard above it.
                Some(family) => family == domain || is_under(family, domain),
                None => is_under(required, domain),
            },
        }
    }
}

/// Whether `host` is a name under `domain` (not `domain` itself).
fn is_under(host: &str, domain: &str) -> bool {
    host.strip_suffix(domain).is_some_and(|head| head.ends_with('.'))
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(host) => f.write_str(host),
            Self::Subdomains(domain) => write!(f, "*.{domain}"),
            Self::Any => f.write_str("*"),
        }
    }
}

/// What an entry allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A host name or wildcard domain, on any port or one port.
    Host {
        /// Which hosts.
        host: HostPattern,
        /// Which port; `None` for any.
        port: Option<u16>,
    },
    /// A URL: scheme, host, port and path prefix.
    Url {
        /// `http` or `https`.
        scheme: String,
        /// Which hosts.
        host: HostPattern,
        /// The port (the scheme's default when the URL has none).
        port: u16,
        /// The path prefix (`/` for everything).
        path: String,
    },
    /// An IP address (a /32 or /128 network) or a CIDR network, on any port or one port.
    Network {
        /// Which addresses.
        network: IpNet,
        /// Which port; `None` for any.
        port: Option<u16>,
    },
}

impl Rule {
    /// The kind of entry, as reports name it.
    pub fn kind(&self) -> EntryKind {
        match self {
            Self::Host {
                host: HostPattern::Exact(_),
                ..
            } => EntryKind::Host,
            Self::Host { .. } => EntryKind::Wildcard,
            Self::Url { .. } => EntryKind::Url,
            Self::Network { network, .. } if network.prefix_len() == network.max_prefix_len() => {
                EntryKind::Ip
            }
            Self::Network { .. } => EntryKind::Cidr,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host { host, port: None } => write!(f, "{host}"),
            Self::Host {
                host,
                port: Some(port),
            } => write!(f, "{host}:{port}"),
            Self::Url {
                scheme,
                host,
                port,
                path,
            } => write!(f, "{scheme}://{host}:{port}{path}"),
            Self::Network { network, port } => {
                let single = network.prefix_len() == network.max_prefix_len();
                match (single, network.addr(), port) {
                    (true, IpAddr::V6(addr), Some(port)) => write!(f, "[{addr}]:{port}"),
                    (true, addr, Some(port)) => write!(f, "{addr}:{port}"),
                    (true, addr, None) => write!(f, "{addr}"),
                    (false, _, Some(port)) => write!(f, "{network} port {port}"),
                    (false, _, None) => write!(f, "{network}"),
                }
            }
        }
    }
}

/// The kinds of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A host name.
    Host,
    /// A wildcard domain (or `*`).
    Wildcard,
    /// A URL.
    Url,
    /// One IP address.
    Ip,
    /// A CIDR network.
    Cidr,
}

/// One entry of the allowlist that could be read.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where it was written.
    pub location: Location,
    /// The entry as written, without its comment.
    pub text: String,
    /// What it allows.
    pub rule: Rule,
    /// Why it allows more than any install needs, if it does.
    pub over_broad: Option<String>,
    /// What was normalised while reading it (host bits of a CIDR, an IDN host name).
    pub notes: Vec<String>,
    /// The earlier entry with the same meaning, if this one repeats it.
    pub duplicate_of: Option<Location>,
}

/// An entry that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Malformed {
    /// Where it was written.
    pub location: Location,
    /// The text as written.
    pub text: String,
    /// What is wrong and how to write it.
    pub reason: String,
}

/// Which form the allowlist file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllowlistForm {
    /// One entry a line.
    Text,
    /// A YAML list of strings.
    Yaml,
    /// A JSON array of strings.
    Json,
}

/// A parsed allowlist.
#[derive(Debug, Clone)]
pub struct Allowlist {
    /// Which form the file had.
    pub form: AllowlistForm,
    /// Every entry that could be read, in file order.
    pub entries: Vec<Entry>,
    /// Every entry that could not.
    pub malformed: Vec<Malformed>,
}

impl Allowlist {
    /// Reads an allowlist in any of its forms. A YAML or JSON document that does not parse at
    /// all is one [`Malformed`] item; in the text form each bad line is one.
    pub fn parse(text: &str) -> Self {
        // Editors on some systems start UTF-8 files with a byte order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let first = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'));
        let (form, items) = match first {
            Some(line) if line.starts_with('[') => {
                (AllowlistForm::Json, list_items(text, AllowlistForm::Json))
            }
            // A YAML list, or a mapping key (`allowlist:`) holding one; an IPv6 entry such as
            // `fd00::` also ends with a colon, but has more than one.
            Some(line) if line == "-" || line.starts_with("- ") || is_mapping_key(line) => {
                (AllowlistForm::Yaml, list_items(text, AllowlistForm::Yaml))
            }
            _ => (AllowlistForm::Text, text_items(text)),
        };
        let mut allowlist = Self {
            form,
            entries: Vec::with_capacity(items.len()),
            malformed: Vec::new(),
        };
        let mut seen: HashMap<Rule, Location> = HashMap::with_capacity(items.len());
        for item in items {
            let (location, text) = match item {
                Ok(item) => item,
                Err(malformed) => {
                    allowlist.malformed.push(malformed);
                    continue;
                }
            };
            match parse_entry(&text) {
                Ok(parsed) => {
                    let duplicate_of = match seen.get(&parsed.rule) {
                        Some(first) => Some(*first),
                        None => {
                            seen.insert(parsed.rule.clone(), location);
                            None
                        }
                    };
                    allowlist.entries.push(Entry {
                        location,
                        over_broad: over_broad(&parsed.rule),
                        text,
                        rule: parsed.rule,
                        notes: parsed.notes,
                        duplicate_of,
                    });
                }
                Err(reason) => allowlist.malformed.push(Malformed {
                    location,
                    text,
                    reason,
                }),
            }
        }
        allowlist
    }

    /// Whether the file had nothing to read: no entries and no malformed ones.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.malformed.is_empty()
    }
}

type Item = Result<(Location, String), Malformed>;

/// `key:` alone on its line.
fn is_mapping_key(line: &str) -> bool {
    line.strip_suffix(':')
        .is_some_and(|key| !key.is_empty() && !key.contains(':'))
}

/// The entries of the one-a-line form, without comments and blank lines.
fn text_items(text: &str) -> Vec<Item> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let entry = strip_comment(line).trim();
            (!entry.is_empty()).then(|| Ok((Location::Line(index + 1), entry.to_owned())))
        })
        .collect()
}

/// A line without its comment: `#` at the start or after whitespace (a URL's `#` stays).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let comment =
        (0..bytes.len()).find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()));
    comment.map_or(line, |i| &line[..i])
}

/// The items of the YAML or JSON list form: a list of strings, or a mapping whose one key
/// (e.g. `allowlist:`) holds it.
fn list_items(text: &str, form: AllowlistForm) -> Vec<Item> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListDocument {
        List(Vec<serde_json::Value>),
        Keyed(HashMap<String, Vec<serde_json::Value>>),
    }
    let document: Result<ListDocument, String> = match form {
        AllowlistForm::Json => serde_json::from_str(text).map_err(|error| error.to_string()),
        _ => serde_saphyr::from_str(text).map_err(|error| error.to_string()),
    };
    let values = match document {
        Ok(ListDocument::List(values)) => values,
        Ok(ListDocument::Keyed(map)) if map.len() == 1 => map.into_values().next().unwrap_or_default(),
        Ok(ListDocument::Keyed(_)) => {
            return vec![Err(Malformed {
                location: Location::Item(0),
                text: String::new(),
                reason: "a mapping must have exactly one key holding the list of entries".to_owned(),
            })];
        }
        Err(error) => {
            return vec![Err(Malformed {
                location: Location::Item(0),
                text: String::new(),
                reason: format!(
                    "not a {} list of strings: {error}",
                    if form == AllowlistForm::Json {
                        "JSON"
                    } else {
                        "YAML"
                    }
                ),
            })];
        }
    };
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let location = Location::Item(index + 1);
            match value {
                serde_json::Value::String(text) => Ok((location, text.trim().to_owned())),
                other => Err(Malformed {
                    location,
                    text: other.to_string(),
                    reason: "each item must be a string".to_owned(),
                }),
            }
        })
        .collect()
}

/// An entry read from its text.
#[derive(Debug)]
struct ParsedEntry {
    rule: Rule,
    notes: Vec<String>,
}

/// Reads one entry; the error says what is wrong and how to write it.
fn parse_entry(text: &str) -> Result<ParsedEntry, String> {
    if text.is_empty() {
        return Err("an empty entry".to_owned());
    }
    if text.contains(char::is_whitespace) {
        return Err("one entry a line: this has whitespace inside (a comment starts with ` #`)".to_owned());
    }
    let mut notes = Vec::new();
    let rule = if text.contains("://") {
        parse_url(text, &mut notes)?
    } else if text.contains('/') {
        parse_cidr(text, &mut notes)?
    } else if let Ok(addr) = SocketAddr::from_str(text) {
        Rule::Network {
            network: IpNet::from(addr.ip()),
            port: Some(check_port(u32::from(addr.port()))?),
        }
    } else if let Ok(addr) = IpAddr::from_str(text) {
        Rule::Network {
            network: IpNet::from(addr),
            port: None,
        }
    } else {
        let (host, port) = split_port(text)?;
        Rule::Host {
            host: parse_host_pattern(host, &mut notes)?,
            port,
        }
    };
    Ok(ParsedEntry { rule, notes })
}

/// `host[:port]`: the port must be 1 to 65535.
fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    if text.starts_with('[') {
        return Err(
            "a bracketed IPv6 address needs a valid address and port, as in [2001:db8::1]:443".to_owned(),
        );
    }
    match text.rsplit_once(':') {
        None => Ok((text, None)),
        Some((host, port)) => {
            let port: u32 = port
                .parse()
                .map_err(|_| format!("{port:?} is not a port number (write host:443)"))?;
            Ok((host, Some(check_port(port)?)))
        }
    }
}

fn check_port(port: u32) -> Result<u16, String> {
    u16::try_from(port)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("port {port} is out of range (1-65535)"))
}

fn parse_url(text: &str, notes: &mut Vec<String>) -> Result<Rule, String> {
    let url = url::Url::parse(text).map_err(|error| match error {
        url::ParseError::InvalidPort => "the port is out of range (1-65535) or not a number".to_owned(),
        other => format!("not a valid URL: {other}"),
    })?;
    let scheme = url.scheme().to_owned();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "scheme {scheme}: only http and https URLs can be allowed"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a URL in an allowlist must not carry credentials".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        notes.push("the query and fragment are ignored: entries allow a path prefix".to_owned());
    }
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let host = match url.host() {
        Some(url::Host::Domain(domain)) => {
            let original = text
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split(['/', ':']).next());
            if let Some(original) = original
                && !original.is_ascii()
            {
                notes.push(format!("the IDN host {original} is written {domain}"));
            }
            parse_host_pattern(domain, &mut Vec::new())?
        }
        Some(url::Host::Ipv4(addr)) => HostPattern::Exact(addr.to_string()),
        Some(url::Host::Ipv6(addr)) => HostPattern::Exact(addr.to_string()),
        None => return Err("the URL has no host".to_owned()),
    };
    if port == 0 {
        return Err("port 0 is out of range (1-65535)".to_owned());
    }
    Ok(Rule::Url {
        scheme,
        host,
        port,
        path: url.path().to_owned(),
    })
}

fn parse_cidr(text: &str, notes: &mut Vec<String>) -> Result<Rule, String> {
    let network = IpNet::from_str(text).map_err(|_| match text.split_once('/') {
        Some((addr, prefix)) if IpAddr::from_str(addr).is_ok() => {
            let max = if addr.contains(':') { 128 } else { 32 };
            format!("prefix length {prefix:?} is not a number from 0 to {max}")
        }
        _ => {
            "not a CIDR network (write 10.0.0.0/8 or 2001:db8::/32); a path belongs in a URL with its scheme"
                .to_owned()
        }
    })?;
    let normalised = network.trunc();
    if normalised != network {
        notes.push(format!(
            "host bits are set: {network} is read as the network {normalised}"
        ));
    }
    Ok(Rule::Network {
        network: normalised,
        port: None,
    })
}

/// A host name, `*.domain`, or `*`, checked and converted to lower-case ASCII.
fn parse_host_pattern(text: &str, notes: &mut Vec<String>) -> Result<HostPattern, String> {
    if text == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(domain) = text.strip_prefix("*.") {
        return Ok(HostPattern::Subdomains(parse_host_name(domain, notes)?));
    }
    if text.contains('*') {
        return Err("a wildcard must be the whole first label, as in *.example.com".to_owned());
    }
    if let Some(domain) = text.strip_prefix('.') {
        return Err(format!(
            "a leading dot is not an entry form here: write *{text} for its subdomains (and {domain} for the domain itself)"
        ));
    }
    Ok(HostPattern::Exact(parse_host_name(text, notes)?))
}

/// Checks a host name (letters, digits and hyphens in labels of 1 to 63, 253 in all) and
/// converts an internationalised one to punycode.
pub(crate) fn parse_host_name(text: &str, notes: &mut Vec<String>) -> Result<String, String> {
    let trimmed = text.strip_suffix('.').unwrap_or(text);
    let ascii = idna::domain_to_ascii(trimmed).map_err(|_| {
        format!("{text:?} is not a valid host name (not a valid internationalised name or punycode)")
    })?;
    if !trimmed.is_ascii() {
        notes.push(format!("the IDN host {trimmed} is written {ascii}"));
    }
    if ascii.is_empty() || ascii.len() > 253 {
        return Err(format!("{text:?} is not a valid host name (1 to 253 characters)"));
    }
    for label in ascii.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !valid {
            return Err(format!(
                "{text:?} is not a valid host name (label {label:?}: letters, digits and inner hyphens, 1 to 63 of them)"
            ));
        }
        if let Some(punycode) = label.strip_prefix("xn--") {
            let (_, result) = idna::domain_to_unicode(label);
            if result.is_err() || punycode.is_empty() {
                return Err(format!(
                    "{text:?} is not a valid host name (label {label:?} is not valid punycode)"
                ));
            }
        }
    }
    if ascii
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|byte| byte.is_ascii_digit()))
    {
        return Err(format!("{text:?} is neither an IP address nor a host name"));
    }
    Ok(ascii)
}

/// Second-level domains under which anyone can register names: a wildcard on one of them is as
/// broad as a wildcard on a top-level domain.
const PUBLIC_SECOND_LEVEL_SUFFIXES: &[&str] = &[
    "co.uk", "org.uk", "ac.uk", "gov.uk", "com.au", "net.au", "org.au", "co.jp", "ne.jp", "or.jp", "com.br",
    "com.cn", "com.mx", "co.nz", "co.za", "co.in", "co.kr", "com.tw", "com.sg", "com.hk",
];

/// Why an entry allows far more than an install could need: `*`, a wildcard on a public
/// suffix (`*.com`, `*.co.uk`), or a network of /8 or wider (/32 or wider for IPv6).
fn over_broad(rule: &Rule) -> Option<String> {
    let host = match rule {
        Rule::Host { host, .. } | Rule::Url { host, .. } => host,
        Rule::Network { network, .. } => {
            let limit = if network.addr().is_ipv4() { 8 } else { 32 };
            return (network.prefix_len() <= limit).then(|| {
                if network.prefix_len() == 0 {
                    format!("{network} is every address")
                } else {
                    format!(
                        "{network} spans 2^{} addresses (a /{limit} or wider)",
                        network.max_prefix_len() - network.prefix_len()
                    )
                }
            });
        }
    };
    match host {
        HostPattern::Any => Some("* allows every host".to_owned()),
        HostPattern::Subdomains(domain) if !domain.contains('.') => Some(format!(
            "*.{domain} allows every name under the top-level domain .{domain}"
        )),
        HostPattern::Subdomains(domain) if PUBLIC_SECOND_LEVEL_SUFFIXES.contains(&domain.as_str()) => Some(
            format!("*.{domain} allows every name under the public suffix .{domain}"),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        parse_entry(text)
            .map(|parsed| parsed.rule)
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    fn refusal(text: &str) -> String {
        match parse_entry(text) {
            Ok(parsed) => panic!("{text} was read as {}", parsed.rule),
            Err(reason) => reason,
        }
    }

    #[test]
    fn each_entry_kind_is_read_and_printed_canonically() {
        let cases = [
            ("Registry-1.Docker.IO.", EntryKind::Host, "registry-1.docker.io"),
            ("ghcr.io:443", EntryKind::Host, "ghcr.io:443"),
            ("*.docker.io", EntryKind::Wildcard, "*.docker.io"),
            ("https://GHCR.io/v2/", EntryKind::Url, "https://ghcr.io:443/v2/"),
            ("http://10.1.2.3:5000", EntryKind::Url, "http://10.1.2.3:5000/"),
            (
                "https://[2001:db8::1]/",
                EntryKind::Url,
                "https://2001:db8::1:443/",
            ),
            ("203.0.113.7", EntryKind::Ip, "203.0.113.7"),
            ("203.0.113.7:443", EntryKind::Ip, "203.0.113.7:443"),
            ("2001:db8::1", EntryKind::Ip, "2001:db8::1"),
            ("[2001:db8::1]:443", EntryKind::Ip, "[2001:db8::1]:443"),
            ("10.0.0.0/16", EntryKind::Cidr, "10.0.0.0/16"),
            ("2001:db8::/48", EntryKind::Cidr, "2001:db8::/48"),
        ];
        for (text, kind, canonical) in cases {
            let rule = rule(text);
            assert_eq!(
                (rule.kind(), rule.to_string().as_str()),
                (kind, canonical),
                "{text}"
            );
        }
    }

    #[test]
    fn host_bits_are_normalised_with_a_note() {
        let parsed = parse_entry("10.1.2.3/16").expect("cidr");
        assert_eq!(parsed.rule.to_string(), "10.1.0.0/16");
        assert_eq!(
            parsed.notes,
            ["host bits are set: 10.1.2.3/16 is read as the network 10.1.0.0/16"]
        );
        assert_eq!(rule("2001:db8::1/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn idn_hosts_become_punycode_and_bad_punycode_is_refused() {
        let parsed = parse_entry("bücher.example").expect("idn");
        assert_eq!(parsed.rule.to_string(), "xn--bcher-kva.example");
        assert_eq!(
            parsed.notes,
            ["the IDN host bücher.example is written xn--bcher-kva.example"]
        );
        assert_eq!(rule("xn--bcher-kva.example"), parsed.rule);
        let url = parse_entry("https://bücher.example/v2/").expect("idn url");
        assert_eq!(url.rule.to_string(), "https://xn--bcher-kva.example:443/v2/");
        assert_eq!(url.notes.len(), 1);
        assert!(refusal("xn--.example").contains("punycode"));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (text, expected) in [
            ("ghcr.io:70000", "port 70000 is out of range (1-65535)"),
            ("ghcr.io:0", "port 0 is out of range"),
            ("https://ghcr.io:99999/", "out of range"),
            ("ghcr.io:https", "not a port number"),
            ("10.0.0.0/33", "prefix length \"33\" is not a number from 0 to 32"),
            ("ghcr.io/v2", "not a CIDR network"),
            ("ftp://files.example", "only http and https"),
            ("https://user:pw@ghcr.io/", "credentials"),
            ("reg*.example.com", "whole first label"),
            (".example.com", "write *.example.com"),
            ("bad_host!.example", "not a valid host name"),
            ("-lead.example", "not a valid host name"),
            ("300.1.1.1", "neither an IP address nor a host name"),
            ("two words", "one entry a line"),
        ] {
            let reason = refusal(text);
            assert!(reason.contains(expected), "{text}: {reason}");
        }
    }

    #[test]
    fn over_broad_entries_are_named() {
        for text in [
            "*",
            "*.com",
            "*.co.uk",
            "0.0.0.0/0",
            "::/0",
            "10.0.0.0/8",
            "2001::/16",
            "https://*.io/",
        ] {
            assert!(over_broad(&rule(text)).is_some(), "{text}");
        }
        for text in ["*.docker.io", "10.0.0.0/9", "2001:db8::/33", "ghcr.io"] {
            assert_eq!(over_broad(&rule(text)), None, "{text}");
        }
    }

    #[test]
    fn wildcards_cover_subdomains_at_any_depth_but_not_the_domain() {
        let pattern = HostPattern::Subdomains("docker.io".to_owned());
        assert!(pattern.covers("registry-1.docker.io"));
        assert!(pattern.covers("a.b.docker.io"));
        assert!(pattern.covers("*.docker.io"));
        assert!(!pattern.covers("docker.io"));
        assert!(!pattern.covers("evildocker.io"));
        assert!(!HostPattern::Exact("x.docker.io".to_owned()).covers("*.docker.io"));
    }

    #[test]
    fn the_text_form_keeps_line_numbers_comments_and_duplicates() {
        let allowlist = Allowlist::parse(
            "# site egress\n\nghcr.io  # the GitHub registry\nGHCR.IO\nnot a host\nhttps://ghcr.io/v2/#frag\n",
        );
        assert_eq!(allowlist.form, AllowlistForm::Text);
        let locations: Vec<_> = allowlist.entries.iter().map(|entry| entry.location).collect();
        assert_eq!(
            locations,
            [Location::Line(3), Location::Line(4), Location::Line(6)]
        );
        assert_eq!(allowlist.entries[1].duplicate_of, Some(Location::Line(3)));
        assert_eq!(allowlist.malformed[0].location, Location::Line(5));
        assert_eq!(allowlist.entries[2].rule.to_string(), "https://ghcr.io:443/v2/");
    }

    #[test]
    fn yaml_and_json_lists_are_read_with_item_numbers() {
        let yaml = Allowlist::parse("allowlist:\n  - ghcr.io\n  - 10.0.0.0/16\n  - 7\n");
        assert_eq!(yaml.form, AllowlistForm::Yaml);
        assert_eq!(yaml.entries.len(), 2);
        assert_eq!(yaml.malformed[0].location, Location::Item(3));
        let plain_yaml = Allowlist::parse("# egress\n- ghcr.io\n- '*.docker.io'\n");
        assert_eq!(plain_yaml.entries[1].rule.kind(), EntryKind::Wildcard);
        let json = Allowlist::parse(r#"["ghcr.io", "bad host"]"#);
        assert_eq!(json.form, AllowlistForm::Json);
        assert_eq!(json.entries.len(), 1);
        assert_eq!(json.malformed[0].location, Location::Item(2));
        let broken = Allowlist::parse("[\"ghcr.io\"");
        assert_eq!(broken.malformed.len(), 1);
        assert!(
            broken.malformed[0].reason.starts_with("not a JSON list"),
            "{:?}",
            broken.malformed
        );
    }

    #[test]
    fn an_ipv6_first_entry_a_byte_order_mark_and_crlf_lines_read_as_text() {
        let allowlist = Allowlist::parse("\u{feff}fd00::\r\n2001:db8::/32\r\n");
        assert_eq!(allowlist.form, AllowlistForm::Text);
        assert_eq!(allowlist.entries.len(), 2, "{:?}", allowlist.malformed);
    }

    #[test]
    fn an_empty_file_is_empty() {
        assert!(Allowlist::parse("# nothing yet\n\n").is_empty());
    }
}
