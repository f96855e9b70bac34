//! The PROXY protocol v2 header (HAProxy's), by which a gateway or load
//! balancer in front of the server says which client a connection carries.
//!
//! A connection from an address on `--trusted-proxy` must begin with this
//! header; the client address in it is then the one the per-address limits
//! and the logs see. From any other address the header is never read, so
//! an untrusted peer cannot name its own address: its first bytes are taken
//! as a packet, and `0x0D0A` is no packet type, so the connection is closed
//! as a protocol error. The header is required, not optional, from a trusted
//! address: if it were optional, a client whose proxy forgot it could send
//! one of its own through the proxy.
//!
//! Parsing and building are the `ppp` crate's; this module only reads the
//! right number of bytes and turns the result into an address.

use std::net::{IpAddr, SocketAddr};

use ppp::v2::{self, Addresses, Command, Protocol, Version};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The fixed part: 12-byte signature, version and command, family and
/// transport, 2-byte length.
const FIXED: usize = 16;
/// The longest header read. Addresses take at most 216 bytes (two Unix
/// paths); the rest is TLVs, which this server ignores.
pub const MAX_HEADER: usize = 1024;

/// Why a connection's PROXY header was refused.
#[derive(Debug, Error)]
pub enum ProxyHeaderError {
    /// The connection failed or ended before the whole header arrived.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// The first bytes are not a PROXY protocol v2 header.
    #[error("a trusted proxy's connection must start with a PROXY protocol v2 header")]
    Missing,
    /// The header says it is longer than [`MAX_HEADER`].
    #[error("PROXY header of {0} bytes is longer than {MAX_HEADER}")]
    TooLong(usize),
    /// The header is malformed.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
}

/// Reads one PROXY v2 header from the start of `stream`, and not a byte
/// more. Returns the client's address, or `None` for a LOCAL header (a
/// health check, or a connection the proxy makes for itself) or one with
/// no internet address, where the connection's own address stands.
pub async fn read<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut header = vec![0u8; FIXED];
    let mut have = 0;
    // Checked as bytes arrive: a client that sends a short packet instead
    // is refused at once, not when its sign-in deadline ends.
    while have < FIXED {
        let n = stream.read(&mut header[have..]).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        have += n;
        let signed = have.min(v2::PROTOCOL_PREFIX.len());
        if header[..signed] != v2::PROTOCOL_PREFIX[..signed] {
            return Err(ProxyHeaderError::Missing);
        }
    }
    let len = FIXED + usize::from(u16::from_be_bytes([header[14], header[15]]));
    if len > MAX_HEADER {
        return Err(ProxyHeaderError::TooLong(len));
    }
    header.resize(len, 0);
    stream.read_exact(&mut header[FIXED..]).await?;
    parse(&header)
}

/// Parses a whole header (as [`read`] collects it).
pub fn parse(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let header =
        v2::Header::try_from(bytes).map_err(|e| ProxyHeaderError::Malformed(e.to_string()))?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
        // An IPv4 client behind an IPv6 proxy arrives IPv4-mapped; the
        // limits count it as the IPv4 address it is.
        Addresses::IPv6(a) => Some(SocketAddr::new(
            IpAddr::V6(a.source_address).to_canonical(),
            a.source_port,
        )),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

/// The header a proxy sends first on a connection it makes for `client`
/// to `server`. Mixed families are sent as IPv6 (IPv4-mapped), which the
/// header requires to be one family.
pub fn encode(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let (client, server) = match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => (SocketAddr::V4(c), SocketAddr::V4(s)),
        (c, s) => (mapped(c), mapped(s)),
    };
    let built = v2::Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (client, server),
    )
    .build();
    // Building into a Vec only fails on a write error, which a Vec has not.
    built.unwrap_or_else(|_| local())
}

/// A LOCAL header: the connection is the proxy's own (a health check).
pub fn local() -> Vec<u8> {
    let mut h = v2::PROTOCOL_PREFIX.to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    h
}

fn mapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn a_header_is_read_and_the_bytes_after_it_are_left() {
        let mut bytes = encode(addr("203.0.113.7:4711"), addr("10.0.0.2:7878"));
        bytes.extend_from_slice(b"\x00\x01rest");
        let mut r = &bytes[..];
        let got = read(&mut r).await.unwrap();
        assert_eq!(got, Some(addr("203.0.113.7:4711")));
        assert_eq!(r, b"\x00\x01rest");
    }

    #[tokio::test]
    async fn ipv6_and_mixed_families_round_trip() {
        let client = addr("[2001:db8::1]:5000");
        let bytes = encode(client, addr("127.0.0.1:7878"));
        assert_eq!(read(&mut &bytes[..]).await.unwrap(), Some(client));
    }

    #[tokio::test]
    async fn local_means_the_connection_address() {
        assert_eq!(read(&mut &local()[..]).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_packet_instead_of_a_header_is_refused() {
        // A SESSION START packet's first bytes.
        let bytes = [0u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            read(&mut &bytes[..]).await,
            Err(ProxyHeaderError::Missing)
        ));
    }

    #[tokio::test]
    async fn an_overlong_header_is_refused_before_it_is_read() {
        let mut bytes = v2::PROTOCOL_PREFIX.to_vec();
        bytes.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(
            read(&mut &bytes[..]).await,
            Err(ProxyHeaderError::TooLong(_))
        ));
    }

    #[tokio::test]
    async fn a_cut_header_is_an_io_error() {
        let bytes = encode(addr("203.0.113.7:4711"), addr("10.0.0.2:7878"));
        assert!(matches!(
            read(&mut &bytes[..20]).await,
            Err(ProxyHeaderError::Io(_))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn any_client_address_round_trips(ip in any::<std::net::IpAddr>(), port in any::<u16>()) {
            let client = SocketAddr::new(ip, port);
            let bytes = encode(client, addr("10.0.0.2:7878"));
            let got = parse(&bytes).unwrap().unwrap();
            prop_assert_eq!(got, SocketAddr::new(ip.to_canonical(), port));
        }
    }
}
