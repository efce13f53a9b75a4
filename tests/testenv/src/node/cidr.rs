//! IPv4 address blocks (`198.18.1.0/24`): parsing, membership, and a block minus others (what
//! a NetworkPolicy `ipBlock` with `except` leaves, as blocks iptables can match).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 block: a base address (host bits zero) and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Ipv4Cidr {
    base: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The block of `prefix` bits around `address` (host bits cleared, as Kubernetes accepts
    /// `ipBlock` CIDRs with host bits set and means the block).
    pub(crate) fn new(address: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self {
            base: u32::from(address) & mask(prefix),
            prefix,
        })
    }

    /// The one-address block of `address`.
    pub(crate) fn host(address: Ipv4Addr) -> Self {
        Self {
            base: u32::from(address),
            prefix: 32,
        }
    }

    /// Whether `address` is in the block.
    pub(crate) fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == self.base
    }

    /// Whether all of `other` is in this block.
    pub(crate) fn covers(&self, other: &Self) -> bool {
        other.prefix >= self.prefix && other.base & mask(self.prefix) == self.base
    }

    /// The block's first and last addresses, as numbers.
    fn bounds(&self) -> (u32, u32) {
        (self.base, self.base | !mask(self.prefix))
    }

    /// The addresses a load balancer may get: every address of the block but its first and
    /// last (a /31 or /32 has none).
    pub(crate) fn usable_hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let (first, last) = self.bounds();
        // A /31 or /32 has no address but its first and last: an empty range.
        let range = first.saturating_add(1)..last;
        range.map(Ipv4Addr::from)
    }

    /// This block minus every block of `excepts`, as the fewest disjoint blocks (in address
    /// order) that cover exactly what is left.
    pub(crate) fn subtract(&self, excepts: &[Ipv4Cidr]) -> Vec<Ipv4Cidr> {
        let mut left = vec![*self];
        for except in excepts {
            left = left.into_iter().flat_map(|block| block.without(except)).collect();
        }
        left.sort();
        left
    }

    /// This block minus one other: itself, nothing, or the halves not holding `except`, split
    /// down to `except`'s size.
    fn without(self, except: &Ipv4Cidr) -> Vec<Ipv4Cidr> {
        if except.covers(&self) {
            return Vec::new();
        }
        if !self.covers(except) {
            return vec![self];
        }
        let mut left = Vec::new();
        let mut block = self;
        while block.prefix < except.prefix {
            let prefix = block.prefix + 1;
            let low = Ipv4Cidr {
                base: block.base,
                prefix,
            };
            let high = Ipv4Cidr {
                base: block.base | (1 << (32 - u32::from(prefix))),
                prefix,
            };
            if low.covers(except) {
                left.push(high);
                block = low;
            } else {
                left.push(low);
                block = high;
            }
        }
        left
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not ADDRESS/PREFIX"))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("{text:?}: {address:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|prefix| *prefix <= 32)
            .ok_or_else(|| format!("{text:?}: {prefix:?} is not a prefix length (0 to 32)"))?;
        Self::new(address, prefix).ok_or_else(|| format!("{text:?} is not an IPv4 block"))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().expect("a block")
    }

    #[test]
    fn blocks_are_parsed_with_host_bits_cleared_and_bad_ones_refused() {
        assert_eq!(cidr("198.18.1.7/24").to_string(), "198.18.1.0/24");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert!("198.18.1.0".parse::<Ipv4Cidr>().is_err());
        assert!("198.18.1.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("fd00::/8".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn membership_and_usable_hosts() {
        let block = cidr("198.18.1.0/24");
        assert!(block.contains(Ipv4Addr::new(198, 18, 1, 255)));
        assert!(!block.contains(Ipv4Addr::new(198, 18, 2, 0)));
        let hosts: Vec<_> = block.usable_hosts().collect();
        assert_eq!(hosts.len(), 254);
        assert_eq!(hosts[0], Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(hosts[253], Ipv4Addr::new(198, 18, 1, 254));
        assert_eq!(cidr("198.18.1.1/32").usable_hosts().count(), 0);
    }

    #[test]
    fn a_block_minus_excepts_leaves_exactly_the_rest() {
        let left = cidr("198.18.0.0/24").subtract(&[cidr("198.18.0.16/30")]);
        let texts: Vec<String> = left.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "198.18.0.0/28",
                "198.18.0.20/30",
                "198.18.0.24/29",
                "198.18.0.32/27",
                "198.18.0.64/26",
                "198.18.0.128/25",
            ]
        );
        for last_octet in 0..=255u8 {
            let address = Ipv4Addr::new(198, 18, 0, last_octet);
            let inside = left.iter().any(|block| block.contains(address));
            assert_eq!(inside, !(16..20).contains(&last_octet), "{address}");
        }
        assert!(
            cidr("198.18.0.0/24")
                .subtract(&[cidr("198.18.0.0/16")])
                .is_empty()
        );
        assert_eq!(
            cidr("198.18.0.0/24").subtract(&[cidr("198.19.0.0/24")]),
            [cidr("198.18.0.0/24")]
        );
        assert_eq!(cidr("0.0.0.0/0").subtract(&[cidr("198.18.0.1/32")]).len(), 32);
    }
}
