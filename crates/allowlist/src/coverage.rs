//! Which entries of an allowlist let the install reach which endpoint.
//!
//! A host entry covers an endpoint on its host (and port, if it names one); a wildcard covers
//! every name under its domain; a URL entry needs the same scheme, host and port, and a path
//! prefix no narrower than the path the install uses. IP and CIDR entries cover a host through
//! its addresses, so they are checked only when probing resolved it (or when the endpoint is an
//! IP address itself), and only if every address the host resolved to is covered.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::endpoints::RequiredEndpoint;
use super::entry::{Allowlist, Entry, Location, Rule};

/// The verdict for one required endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coverage {
    /// An entry of reasonable breadth allows it.
    Covered,
    /// Only an over-broad entry (`*`, `*.com`, `0.0.0.0/0`, ...) allows it.
    OverBroadOnly,
    /// Nothing allows it.
    NotCovered,
}

impl Coverage {
    /// How reports print the verdict.
    pub fn label(self) -> &'static str {
        match self {
            Self::Covered => "covered",
            Self::OverBroadOnly => "covered only by an over-broad entry",
            Self::NotCovered => "NOT COVERED",
        }
    }
}

/// How one endpoint is covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointCoverage {
    /// The verdict.
    pub coverage: Coverage,
    /// Indexes (into [`Allowlist::entries`]) of the entries that allow it.
    pub covered_by: Vec<usize>,
    /// Why it is not (fully) covered, when something can be said.
    pub detail: Option<String>,
}

/// Which entries cover `endpoint`. `addresses` are the addresses probing resolved its host to
/// (empty without probing).
pub fn cover(endpoint: &RequiredEndpoint, allowlist: &Allowlist, addresses: &[IpAddr]) -> EndpointCoverage {
    let literal: Option<IpAddr> = endpoint.host.parse().ok();
    let addresses: Vec<IpAddr> = literal.map_or_else(|| addresses.to_vec(), |address| vec![address]);
    let mut covered_by = Vec::new();
    let mut addresses_covered = vec![false; addresses.len()];
    let mut network_entries = Vec::new();
    for (index, entry) in allowlist.entries.iter().enumerate() {
        if entry.duplicate_of.is_some() {
            continue;
        }
        match &entry.rule {
            Rule::Network { network, port } => {
                if port.is_some_and(|port| port != endpoint.port) {
                    continue;
                }
                let mut contains_any = false;
                for (address, covered) in addresses.iter().zip(addresses_covered.iter_mut()) {
                    if network.contains(address) {
                        *covered = true;
                        contains_any = true;
                    }
                }
                if contains_any {
                    network_entries.push(index);
                }
            }
            _ if allows_by_name(&entry.rule, endpoint) => covered_by.push(index),
            _ => {}
        }
    }
    let mut detail = None;
    if !network_entries.is_empty() {
        if addresses_covered.iter().all(|covered| *covered) {
            covered_by.extend(network_entries);
        } else {
            let missing: Vec<String> = addresses
                .iter()
                .zip(&addresses_covered)
                .filter(|(_, covered)| !**covered)
                .map(|(address, _)| address.to_string())
                .collect();
            detail = Some(format!(
                "IP entries cover only some of its addresses; not {}",
                missing.join(", ")
            ));
        }
    }
    covered_by.sort_unstable();
    let coverage = if covered_by
        .iter()
        .any(|&index| allowlist.entries[index].over_broad.is_none())
    {
        Coverage::Covered
    } else if covered_by.is_empty() {
        if detail.is_none()
            && addresses.is_empty()
            && literal.is_none()
            && !endpoint.is_pattern()
            && has_network_entries(allowlist)
        {
            detail =
                Some("IP and CIDR entries are checked against its addresses only with --probe".to_owned());
        }
        Coverage::NotCovered
    } else {
        Coverage::OverBroadOnly
    };
    EndpointCoverage {
        coverage,
        covered_by,
        detail,
    }
}

fn has_network_entries(allowlist: &Allowlist) -> bool {
    allowlist
        .entries
        .iter()
        .any(|entry| matches!(entry.rule, Rule::Network { .. }))
}

/// Whether a host, wildcard or URL entry allows `endpoint`.
fn allows_by_name(rule: &Rule, endpoint: &RequiredEndpoint) -> bool {
    match rule {
        Rule::Host { host, port } => {
            host.covers(&endpoint.host) && port.is_none_or(|port| port == endpoint.port)
        }
        Rule::Url {
            scheme,
            host,
            port,
            path,
        } => {
            scheme == endpoint.scheme.as_str()
                && *port == endpoint.port
                && host.covers(&endpoint.host)
                && (path == "/"
                    || endpoint
                        .path
                        .as_deref()
                        .is_some_and(|needed| needed.starts_with(path.as_str())))
        }
        Rule::Network { .. } => false,
    }
}

/// Whether an entry is used by anything the install needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    /// It covers at least one required endpoint.
    Used,
    /// It covers nothing the install needs.
    Unused,
    /// An IP or CIDR entry, and no address was resolved to check it against (no `--probe`).
    NotChecked,
    /// It repeats an earlier entry.
    Duplicate,
}

/// The usage of each entry, given every endpoint's coverage.
pub fn usage(allowlist: &Allowlist, coverages: &[EndpointCoverage], probed: bool) -> Vec<Usage> {
    let mut used = vec![false; allowlist.entries.len()];
    for coverage in coverages {
        for &index in &coverage.covered_by {
            used[index] = true;
        }
    }
    allowlist
        .entries
        .iter()
        .zip(used)
        .map(|(entry, used)| match entry {
            Entry {
                duplicate_of: Some(_),
                ..
            } => Usage::Duplicate,
            _ if used => Usage::Used,
            Entry {
                rule: Rule::Network { .. },
                ..
            } if !probed => Usage::NotChecked,
            _ => Usage::Unused,
        })
        .collect()
}

/// The location and text of the entries at `indexes`, for reports.
pub fn describe(allowlist: &Allowlist, indexes: &[usize]) -> Vec<(Location, String)> {
    indexes
        .iter()
        .map(|&index| {
            let entry = &allowlist.entries[index];
            (entry.location, entry.text.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::endpoints::{EndpointRole, Evidence, Origin, Scheme};
    use super::*;

    fn endpoint(scheme: Scheme, host: &str, port: u16, path: Option<&str>) -> RequiredEndpoint {
        RequiredEndpoint {
            scheme,
            host: host.to_owned(),
            port,
            path: path.map(str::to_owned),
            role: EndpointRole::RegistryApi,
            origin: Origin::Fixed,
            evidence: Evidence::Spec,
            needed_by: Vec::new(),
            why: String::new(),
        }
    }

    fn verdict(allowlist: &str, endpoint: &RequiredEndpoint, addresses: &[&str]) -> (Coverage, Vec<usize>) {
        let allowlist = Allowlist::parse(allowlist);
        assert!(allowlist.malformed.is_empty(), "{:?}", allowlist.malformed);
        let addresses: Vec<IpAddr> = addresses.iter().map(|a| a.parse().expect("address")).collect();
        let coverage = cover(endpoint, &allowlist, &addresses);
        (coverage.coverage, coverage.covered_by)
    }

    #[test]
    fn each_entry_kind_covers_by_its_rule() {
        let ghcr = endpoint(Scheme::Https, "ghcr.io", 443, Some("/v2/"));
        let covered = |list: &str| verdict(list, &ghcr, &[]).0;
        assert_eq!(covered("ghcr.io"), Coverage::Covered);
        assert_eq!(covered("ghcr.io:443"), Coverage::Covered);
        assert_eq!(covered("ghcr.io:8443"), Coverage::NotCovered);
        assert_eq!(covered("*.ghcr.io"), Coverage::NotCovered);
        assert_eq!(covered("https://ghcr.io"), Coverage::Covered);
        assert_eq!(covered("https://ghcr.io/v2/"), Coverage::Covered);
        assert_eq!(covered("https://ghcr.io/v2/library/"), Coverage::NotCovered);
        assert_eq!(covered("http://ghcr.io/"), Coverage::NotCovered);
        assert_eq!(covered("*"), Coverage::OverBroadOnly);
        assert_eq!(covered("*.io"), Coverage::OverBroadOnly);
        assert_eq!(covered("*.io\nghcr.io"), Coverage::Covered);
        let cdn = endpoint(Scheme::Https, "production.cloudflare.docker.com", 443, None);
        assert_eq!(verdict("*.docker.com", &cdn, &[]).0, Coverage::Covered);
        assert_eq!(verdict("https://*.docker.com/", &cdn, &[]).0, Coverage::Covered);
        assert_eq!(
            verdict("https://production.cloudflare.docker.com/blobs/", &cdn, &[]).0,
            Coverage::NotCovered
        );
        let family = endpoint(Scheme::Https, "*.pkg.dev", 443, None);
        assert_eq!(verdict("*.pkg.dev", &family, &[]).0, Coverage::Covered);
        assert_eq!(verdict("us-docker.pkg.dev", &family, &[]).0, Coverage::NotCovered);
    }

    #[test]
    fn ip_entries_cover_through_every_resolved_address() {
        let ghcr = endpoint(Scheme::Https, "ghcr.io", 443, Some("/v2/"));
        let addresses = ["140.82.112.33", "2606:50c0::1"];
        assert_eq!(verdict("140.82.112.0/24", &ghcr, &[]).0, Coverage::NotCovered);
        assert_eq!(
            verdict("140.82.112.0/24", &ghcr, &addresses).0,
            Coverage::NotCovered
        );
        assert_eq!(
            verdict("140.82.112.0/24\n2606:50c0::/32", &ghcr, &addresses),
            (Coverage::Covered, vec![0, 1])
        );
        assert_eq!(
            verdict("140.82.112.33:443\n2606:50c0::1", &ghcr, &addresses).0,
            Coverage::Covered
        );
        assert_eq!(
            verdict("140.82.112.33:80\n2606:50c0::1", &ghcr, &addresses).0,
            Coverage::NotCovered
        );
        assert_eq!(
            verdict("0.0.0.0/0\n::/0", &ghcr, &addresses).0,
            Coverage::OverBroadOnly
        );
        let literal = endpoint(Scheme::Http, "10.1.2.3", 5000, Some("/v2/"));
        assert_eq!(verdict("10.1.0.0/16", &literal, &[]).0, Coverage::Covered);
        assert_eq!(
            verdict("http://10.1.2.3:5000/", &literal, &[]).0,
            Coverage::Covered
        );
    }

    #[test]
    fn partial_ip_coverage_names_the_missing_addresses() {
        let allowlist = Allowlist::parse("140.82.112.0/24\n");
        let ghcr = endpoint(Scheme::Https, "ghcr.io", 443, None);
        let addresses: Vec<IpAddr> = ["140.82.112.33", "20.1.1.1"]
            .iter()
            .map(|a| a.parse().expect("ip"))
            .collect();
        let coverage = cover(&ghcr, &allowlist, &addresses);
        assert_eq!(coverage.coverage, Coverage::NotCovered);
        assert_eq!(
            coverage.detail.as_deref(),
            Some("IP entries cover only some of its addresses; not 20.1.1.1")
        );
    }

    #[test]
    fn usage_tells_used_unused_unchecked_and_duplicates() {
        let allowlist = Allowlist::parse("ghcr.io\nexample.org\n10.0.0.0/16\nGHCR.io\n");
        let ghcr = endpoint(Scheme::Https, "ghcr.io", 443, None);
        let coverages = [cover(&ghcr, &allowlist, &[])];
        assert_eq!(
            usage(&allowlist, &coverages, false),
            [Usage::Used, Usage::Unused, Usage::NotChecked, Usage::Duplicate]
        );
        assert_eq!(usage(&allowlist, &coverages, true)[2], Usage::Unused);
    }
}
