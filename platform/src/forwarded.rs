//! `X-Forwarded-For`: the chain of addresses a request passed through, from both ends.
//!
//! A proxy (envproxy towards a workspace, the dashboard towards the manager) sends on the chain
//! it received with the address it saw appended: [`chain`].
//!
//! The manager reads it for its per-address login limit. Behind the ingress controller and the
//! dashboard every connection comes from one of a few pod addresses, so the peer address alone
//! would put every user in one bucket. A peer among the proxies the manager trusts
//! (`--trusted-proxies`, and the pods `--trusted-proxy-pods` selects) names the client: the
//! right-most address of the chain that is not a trusted proxy. A peer that is not trusted
//! cannot choose its bucket: its chain is ignored.

use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The entries of every `X-Forwarded-For` header of `headers`, in order.
fn entries(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// The `X-Forwarded-For` chain to send on: the one `headers` arrived with, then `peer`, the
/// address the request came from. `None` when there is neither.
pub fn chain(headers: &HeaderMap, peer: Option<IpAddr>) -> Option<String> {
    let mut chain: Vec<String> = entries(headers).map(str::to_owned).collect();
    chain.extend(peer.map(|peer| peer.to_string()));
    (!chain.is_empty()).then(|| chain.join(", "))
}

/// The networks whose connections may say, in `X-Forwarded-For`, whom they forward.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// Comma-separated addresses and CIDR networks (`10.0.0.0/8,fd00::/8,192.0.2.7`).
    fn from_str(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                IpNet::from_str(item)
                    .or_else(|_| IpAddr::from_str(item).map(IpNet::from))
                    .map(|network| network.trunc())
                    .map_err(|_| format!("{item:?} is neither an IP address nor a CIDR network"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl TrustedProxies {
    /// Whether `address` is in one of the networks.
    pub fn contains(&self, address: &IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(address))
    }

    /// [`client_address`] trusting exactly these networks.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_address(peer, headers, |address| self.contains(address))
    }
}

/// The client's address: `peer`, or, when `peer` is a trusted proxy, the right-most address of
/// `X-Forwarded-For` that is not (the left-most when all are; `peer` when the header is missing
/// or unreadable).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: impl Fn(&IpAddr) -> bool) -> IpAddr {
    if !trusted(&peer) {
        return peer;
    }
    let chain: Vec<IpAddr> = entries(headers)
        .map_while(|entry| IpAddr::from_str(entry).ok())
        .collect();
    chain
        .iter()
        .rev()
        .find(|address| !trusted(address))
        .or(chain.first())
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).expect("header"));
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn only_trusted_peers_name_the_client_and_the_right_most_untrusted_address_wins() {
        let trusted: TrustedProxies = "10.0.0.0/8, fd00::/8,127.0.0.1".parse().expect("trusted");
        let forwarded = headers(&["198.51.100.7, 203.0.113.9", "10.1.2.3"]);
        assert_eq!(
            trusted.client_address(ip("10.9.9.9"), &forwarded),
            ip("203.0.113.9")
        );
        assert_eq!(
            trusted.client_address(ip("192.0.2.1"), &forwarded),
            ip("192.0.2.1")
        );
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        assert_eq!(
            trusted.client_address(ip("fd00::1"), &headers(&["10.0.0.5, 10.0.0.6"])),
            ip("10.0.0.5")
        );
        assert_eq!(
            trusted.client_address(ip("10.0.0.1"), &headers(&["not-an-address"])),
            ip("10.0.0.1")
        );
        assert_eq!(
            TrustedProxies::default().client_address(ip("10.0.0.1"), &forwarded),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_proxy_sends_on_the_chain_it_came_with_and_its_peer() {
        let forwarded = headers(&["198.51.100.1", "10.0.0.7"]);
        assert_eq!(
            chain(&forwarded, Some(ip("10.0.0.9"))).as_deref(),
            Some("198.51.100.1, 10.0.0.7, 10.0.0.9")
        );
        assert_eq!(
            chain(&HeaderMap::new(), Some(ip("10.0.0.9"))).as_deref(),
            Some("10.0.0.9")
        );
        assert_eq!(chain(&HeaderMap::new(), None), None);
    }

    #[test]
    fn bad_entries_are_named() {
        let error = "10.0.0.0/8,proxy.local"
            .parse::<TrustedProxies>()
            .expect_err("refused");
        assert!(error.contains("\"proxy.local\""), "{error}");
        assert_eq!("10.1.2.3/8".parse::<TrustedProxies>(), "10.0.0.0/8".parse());
    }
}
