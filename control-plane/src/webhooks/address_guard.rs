//! Where a webhook may be delivered: never to a private, loopback, link-local or otherwise
//! non-public address, unless the local-development switch allows it.
//!
//! The check is made on the address actually connected to: the delivery client resolves names
//! through [`GuardedResolver`], which drops every non-public address it is given, so a name
//! that resolves to a public address when the endpoint is made and to `127.0.0.1` when it is
//! used (DNS rebinding) still cannot reach the inside. An address written in the URL is not
//! resolved, so [`literal_allowed`] checks it before sending. The client also follows no
//! redirects and uses no proxy, which would otherwise choose the address for it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is an ordinary address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                // Documentation 2001:db8::/32, NAT64 64:ff9b::/96 (reaches IPv4 inside).
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
                || (first == 0x0064 && v6.segments()[1] == 0xff9b))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Carrier-grade NAT 100.64.0.0/10, IETF 192.0.0.0/24, benchmarking 198.18.0.0/15,
        // reserved 240.0.0.0/4.
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xfe) == 18)
        || a >= 240)
}

/// Whether a URL's host, when it is an address rather than a name, may be delivered to.
pub fn literal_allowed(host: &str, local_dev: bool) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => local_dev || is_public(ip),
        Err(_) => true,
    }
}

/// Resolves names with the system resolver and keeps only the addresses a delivery may use.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// The local-development switch: every address is allowed.
    pub local_dev: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let local_dev = self.local_dev;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| local_dev || is_public(address.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            let addresses: Addrs = Box::new(found.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    #[test]
    fn inside_addresses_are_not_public() {
        for text in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let ip: IpAddr = text.parse().expect("address");
            assert!(!is_public(ip), "{text} passed as public");
        }
        assert!(!is_public(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        for text in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            let ip: IpAddr = text.parse().expect("address");
            assert!(is_public(ip), "{text} refused");
        }
    }

    #[test]
    fn a_literal_address_is_checked_and_a_name_is_left_to_the_resolver() {
        assert!(!literal_allowed("127.0.0.1", false));
        assert!(!literal_allowed("[::1]", false));
        assert!(literal_allowed("[::1]", true));
        assert!(literal_allowed("hooks.example.com", false));
        assert!(literal_allowed("1.1.1.1", false));
    }

    #[tokio::test]
    async fn the_resolver_drops_loopback_unless_local_development_allows_it() {
        let name: Name = "localhost".parse().expect("name");
        let refused = GuardedResolver { local_dev: false }.resolve(name).await;
        assert!(refused.is_err(), "localhost resolved to an allowed address");
        let name: Name = "localhost".parse().expect("name");
        let allowed = GuardedResolver { local_dev: true }
            .resolve(name)
            .await
            .expect("resolves");
        assert!(
            allowed
                .into_iter()
                .all(|address| address.ip().is_loopback())
        );
    }
}
