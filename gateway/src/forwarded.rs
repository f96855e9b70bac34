//! The client's real address behind reverse proxies: `Forwarded`
//! (RFC 7239) or `X-Forwarded-For`, believed only as far as it was written
//! by proxies on `--trusted-proxy`.
//!
//! Each proxy appends the address it received the request from. Reading
//! from the right, every entry written by a trusted proxy is skipped; the
//! first address that is not a trusted proxy is the client. Anything left
//! of it was written by the client itself and is ignored, so a client can
//! never choose its own address. A header that cannot be read makes the
//! request count as coming from the last proxy itself, never from a
//! guessed address.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts the proxies in these networks.
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The address a request really comes from: `peer` (the TCP peer)
    /// unless it is a trusted proxy whose headers say otherwise. The port
    /// is the peer's when the headers give none.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        // `Forwarded` is the standard; a proxy that sends both writes the
        // same hops into each.
        let hops = match forwarded_for(headers) {
            Some(hops) => hops,
            None => match x_forwarded_for(headers) {
                Some(hops) => hops,
                None => return peer,
            },
        };
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(addr) => {
                    client = *addr;
                    if !self.trusts(addr.ip()) {
                        return client;
                    }
                }
                // An unreadable or obfuscated hop: stop at the last proxy
                // that was trusted.
                None => return client,
            }
        }
        client
    }
}

/// Every `for=` of every `Forwarded` header, in order; `None` for a value
/// that is no IP address (`unknown`, an obfuscated `_name`, garbage).
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<SocketAddr>>> {
    let mut hops = Vec::new();
    let mut any = false;
    for value in headers.get_all("forwarded") {
        any = true;
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in value.split(',') {
            let for_value = element.split(';').find_map(|pair| {
                let (key, v) = pair.split_once('=')?;
                key.trim().eq_ignore_ascii_case("for").then(|| v.trim())
            });
            // An element without `for=` still is a hop we cannot place.
            hops.push(for_value.and_then(parse_node));
        }
    }
    any.then_some(hops)
}

/// Every address of every `X-Forwarded-For` header, in order.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<SocketAddr>>> {
    let mut hops = Vec::new();
    let mut any = false;
    for value in headers.get_all("x-forwarded-for") {
        any = true;
        match value.to_str() {
            Ok(value) => hops.extend(value.split(',').map(|v| parse_node(v.trim()))),
            Err(_) => hops.push(None),
        }
    }
    any.then_some(hops)
}

/// One node: `192.0.2.1`, `192.0.2.1:4711`, `"[2001:db8::1]:4711"`,
/// `2001:db8::1`; port 0 when none is given.
fn parse_node(s: &str) -> Option<SocketAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip.to_canonical(), 0));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(SocketAddr::new(addr.ip().to_canonical(), addr.port()));
    }
    // `[v6]` without a port.
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let ip: IpAddr = inner.parse().ok()?;
    Some(SocketAddr::new(ip.to_canonical(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const PROXY: &str = "10.0.0.1:50000";

    #[test]
    fn an_untrusted_peer_cannot_name_an_address() {
        let t = trusted(&["10.0.0.0/8"]);
        let peer: SocketAddr = "198.51.100.9:1234".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("forwarded", "for=203.0.113.2"),
        ]);
        assert_eq!(t.client(peer, &h), peer);
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.1")]);
        assert_eq!(t.client(PROXY.parse().unwrap(), &h).ip(), ip("203.0.113.1"));
    }

    #[test]
    fn what_the_client_wrote_left_of_the_proxies_is_ignored() {
        let t = trusted(&["10.0.0.0/8"]);
        // The client sent "X-Forwarded-For: 1.2.3.4"; nginx appended its
        // peer; a second trusted proxy appended nginx.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.1, 10.0.0.7")]);
        assert_eq!(t.client(PROXY.parse().unwrap(), &h).ip(), ip("203.0.113.1"));
    }

    #[test]
    fn forwarded_is_read_with_ports_quotes_and_ipv6() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers(&[(
            "forwarded",
            r#"for=1.2.3.4, for="[2001:db8::7]:4711";proto=https;by=10.0.0.1"#,
        )]);
        assert_eq!(
            t.client(PROXY.parse().unwrap(), &h),
            "[2001:db8::7]:4711".parse().unwrap()
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers(&[
            ("forwarded", "for=203.0.113.5"),
            ("x-forwarded-for", "203.0.113.6"),
        ]);
        assert_eq!(t.client(PROXY.parse().unwrap(), &h).ip(), ip("203.0.113.5"));
    }

    #[test]
    fn an_unreadable_hop_stops_at_the_last_trusted_proxy() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers(&[("forwarded", "for=203.0.113.5, for=_hidden, for=10.0.0.9")]);
        assert_eq!(t.client(PROXY.parse().unwrap(), &h).ip(), ip("10.0.0.9"));
        let h = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(t.client(PROXY.parse().unwrap(), &h), PROXY.parse().unwrap());
    }

    #[test]
    fn ipv4_mapped_proxies_and_clients_are_ipv4() {
        let t = trusted(&["127.0.0.1/32"]);
        let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.1")]);
        let peer: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert_eq!(t.client(peer, &h).ip(), ip("203.0.113.1"));
    }

    #[test]
    fn no_header_from_a_trusted_proxy_is_the_proxy() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            t.client(PROXY.parse().unwrap(), &HeaderMap::new()),
            PROXY.parse().unwrap()
        );
    }

    proptest! {
        /// Whatever a client puts in the headers, the answer is the peer,
        /// an address a trusted proxy wrote, or the first untrusted
        /// address from the right: never one left of it.
        #[test]
        fn the_client_is_the_rightmost_untrusted_hop(
            hops in proptest::collection::vec((any::<bool>(), any::<u32>()), 1..8),
        ) {
            let t = trusted(&["10.0.0.0/8"]);
            let addrs: Vec<IpAddr> = hops
                .iter()
                .map(|(is_proxy, n)| if *is_proxy {
                    IpAddr::from([10, 0, (n >> 8) as u8, *n as u8])
                } else {
                    IpAddr::from([203, 0, 113, (*n as u8).max(1)])
                })
                .collect();
            let list = addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            let h = headers(&[("x-forwarded-for", &list)]);
            let got = t.client(PROXY.parse().unwrap(), &h).ip();
            let want = addrs.iter().rev().find(|a| !t.trusts(**a)).copied()
                .unwrap_or(addrs[0]);
            prop_assert_eq!(got, want);
        }
    }
}
