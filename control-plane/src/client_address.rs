//! Which address a request comes from, for the sign-in and leak-report throttles and the audit
//! log: the connection's peer, or, when the peer is a reverse proxy the operator trusts
//! (`--trusted-proxies`), the client that proxy names in `X-Forwarded-For`.
//!
//! Behind a proxy every connection comes from the proxy, so without this setting all clients
//! share one throttle allowance (a few failed sign-ins a second would hold everyone back) and
//! the audit log records the proxy. `X-Forwarded-For` is read only from a trusted peer: anyone
//! else could write any address there. Its entries are read from the right (each proxy appends
//! the address it received the request from), skipping addresses that are trusted proxies
//! themselves; the first one that is not is the client. An entry that is not an address stops
//! the walk at the last trusted hop, which is then the address counted.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use axum::http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

/// The reverse proxies whose `X-Forwarded-For` is believed: addresses and networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `--trusted-proxies` item that is neither an address nor a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or network (expected e.g. 10.0.0.1, 10.0.0.0/8, fd00::/8)")]
pub struct NotAnAddress(String);

impl FromStr for TrustedProxies {
    type Err = NotAnAddress;

    /// Comma-separated addresses (`10.0.0.1`, `::1`) and networks (`10.0.0.0/8`); empty for
    /// none.
    fn from_str(text: &str) -> Result<Self, NotAnAddress> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| NotAnAddress(item.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&items.join(","))
    }
}

impl TrustedProxies {
    /// Whether no proxy is trusted (the peer is always the client).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address: `peer`, unless `peer` is trusted and `headers` name a client
    /// behind it (see the module header).
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = canonical(peer?);
        if !self.trusts(client) {
            return Some(client);
        }
        // From the right, entry by entry, each decoded on its own: bytes a client wrote into
        // its own entry (on the line a proxy appended to) do not hide the proxy's entry.
        let lines: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let entries = lines
            .iter()
            .rev()
            .flat_map(|line| line.rsplit(|byte| *byte == b','));
        for entry in entries {
            let address = std::str::from_utf8(entry)
                .ok()
                .and_then(|text| forwarded_address(text.trim()));
            let Some(address) = address else {
                break;
            };
            client = address;
            if !self.trusts(address) {
                break;
            }
        }
        Some(client)
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address (a dual-stack listener reports IPv4 peers
/// that way); any other address as it is.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`) as some proxies write it.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    let host = match entry.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']')?.0,
        None => entry.rsplit_once(':')?.0,
    };
    host.parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().expect("header value"));
        }
        headers
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("address"))
    }

    #[test]
    fn the_setting_reads_addresses_and_networks() {
        let trusted: TrustedProxies = " 10.0.0.0/8, 127.0.0.1 ,fd00::/8,::1"
            .parse()
            .expect("valid");
        assert_eq!(
            trusted.to_string(),
            "10.0.0.0/8,127.0.0.1/32,fd00::/8,::1/128"
        );
        assert!("".parse::<TrustedProxies>().expect("empty").is_empty());
        let refused = "10.0.0.1,proxy.internal".parse::<TrustedProxies>();
        assert_eq!(refused, Err(NotAnAddress("proxy.internal".into())));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        let spoofed = headers(&["198.51.100.7"]);
        assert_eq!(none.client(ip("203.0.113.9"), &spoofed), ip("203.0.113.9"));
        let trusted: TrustedProxies = "10.0.0.1".parse().expect("valid");
        assert_eq!(
            trusted.client(ip("203.0.113.9"), &spoofed),
            ip("203.0.113.9")
        );
        assert_eq!(trusted.client(None, &spoofed), None);
    }

    #[test]
    fn a_trusted_proxy_names_the_client_it_received_the_request_from() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().expect("valid");
        let peer = ip("10.0.0.1");
        // The client wrote its own entry first; the proxy appended the address it saw.
        let forwarded = headers(&["1.2.3.4, 198.51.100.7"]);
        assert_eq!(trusted.client(peer, &forwarded), ip("198.51.100.7"));
        // A chain of trusted proxies is skipped, over several header lines too.
        let chained = headers(&["1.2.3.4, 198.51.100.7", "10.1.1.1"]);
        assert_eq!(trusted.client(peer, &chained), ip("198.51.100.7"));
        // Ports and brackets as some proxies write them; IPv4-mapped peers.
        let ported = headers(&["[2001:db8::5]:4711, 192.0.2.8:80"]);
        assert_eq!(trusted.client(peer, &ported), ip("192.0.2.8"));
        assert_eq!(
            trusted.client(ip("::ffff:10.0.0.1"), &forwarded),
            ip("198.51.100.7")
        );
        // No header: the proxy itself. Only trusted hops: the farthest of them.
        assert_eq!(trusted.client(peer, &HeaderMap::new()), peer);
        assert_eq!(
            trusted.client(peer, &headers(&["10.2.2.2"])),
            ip("10.2.2.2")
        );
        // An entry that is no address stops the walk at the last trusted hop.
        let garbled = headers(&["198.51.100.7, unknown, 10.3.3.3"]);
        assert_eq!(trusted.client(peer, &garbled), ip("10.3.3.3"));
        // Bytes that are no text in the client's own entry, on the line the proxy appended
        // to, do not hide the proxy's entry.
        let mut undecodable = HeaderMap::new();
        let line = HeaderValue::from_bytes(b"\xff\xfe, 198.51.100.7").expect("header bytes");
        undecodable.append("x-forwarded-for", line);
        assert_eq!(trusted.client(peer, &undecodable), ip("198.51.100.7"));
        // An untrusted IPv4-mapped peer is its IPv4 address, as the throttle counts it.
        assert_eq!(
            trusted.client(ip("::ffff:203.0.113.9"), &undecodable),
            ip("203.0.113.9")
        );
    }
}
