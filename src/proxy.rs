//! The PROXY protocol (versions 1 and 2), as spoken by load balancers in front of
//! a server — HAProxy (`send-proxy`, `send-proxy-v2`), nginx's stream module
//! (`proxy_protocol on`), cloud load balancers: a header at the very start of a
//! connection saying who the client is, before any byte of the client's own.
//!
//! This file decides what a connection's first bytes are — a header, the start of
//! one, or no header at all — and turns a header into a [`ProxyHeader`]. Parsing
//! is done by the `ppp` crate; what is ours is detection (by signature, so that in
//! optional mode a client's own first bytes are never mistaken for a header), the
//! bounds (a header longer than [`MAX_HEADER`] is refused as soon as its length
//! is known) and the policy (which peers may send one). The reactor reads the
//! header in the connection's preamble, before the handler's `on_open`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ppp::PartialResult as _;

use crate::endpoint::PeerAddr;

/// Whether a listener's connections start with a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProxyProtocol {
    /// No header is read: every byte is the client's. The default; it costs
    /// nothing.
    #[default]
    Off,
    /// A connection may start with a header (version 1 or 2, told apart by its
    /// signature) or not. Only peers in the listener's trusted networks may send
    /// one: from anyone else the first bytes are the client's own, whatever they
    /// look like, so a client cannot claim another address. Suits client-first
    /// protocols; a connection that sends nothing is opened without a header at
    /// the preamble deadline.
    Optional,
    /// Every connection must start with a header, from a trusted peer; one
    /// without (or with a bad one) is closed before the handler sees it.
    Required,
}

/// The longest header accepted, in bytes: a version 1 header is at most 107; a
/// version 2 one announces its length up front and is refused at once if longer.
pub const MAX_HEADER: usize = 4096;

/// The version 2 signature.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// How a version 1 header starts.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 header, CRLF included.
const V1_MAX: usize = 107;

/// Why a connection was closed in its PROXY preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The listener requires a header and the connection did not start with one.
    Missing,
    /// The header is not valid (bad signature, version, command, addresses).
    Malformed,
    /// The header is longer than [`MAX_HEADER`].
    Oversized,
    /// The header did not arrive before the preamble deadline.
    Late,
    /// The peer may not send a header (not in the listener's trusted networks).
    Untrusted,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyError::Missing => "no PROXY header",
            ProxyError::Malformed => "malformed PROXY header",
            ProxyError::Oversized => "PROXY header too long",
            ProxyError::Late => "PROXY header late",
            ProxyError::Untrusted => "PROXY header from an untrusted peer",
        })
    }
}

/// What a PROXY header said, from [`Context::proxy`](crate::Context::proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    version: u8,
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
    balancer: PeerAddr,
    authority: Option<Box<str>>,
    unique_id: Option<Box<[u8]>>,
}

impl ProxyHeader {
    /// 1 or 2.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The client's address, as the balancer saw it; `None` for a header that
    /// relays no address (version 2 `LOCAL`, a balancer's own health check;
    /// version 1 `UNKNOWN`). [`Context::peer_addr`](crate::Context::peer_addr)
    /// returns it when present.
    pub fn source(&self) -> Option<SocketAddr> {
        self.source
    }

    /// The address the client connected to (the balancer's frontend), when the
    /// header carries one.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.destination
    }

    /// The balancer itself: the connection's actual peer.
    pub fn balancer(&self) -> &PeerAddr {
        &self.balancer
    }

    /// The host name the client asked for (version 2 `PP2_TYPE_AUTHORITY`: the
    /// TLS server name, or the host header), when sent and valid UTF-8.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The balancer's unique id for the connection (version 2
    /// `PP2_TYPE_UNIQUE_ID`, HAProxy's `unique-id-format`), when sent.
    pub fn unique_id(&self) -> Option<&[u8]> {
        self.unique_id.as_deref()
    }
}

/// What a connection's first bytes turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The start of a header (or of its signature): more bytes are needed.
    Incomplete,
    /// No header: every byte is the client's.
    NoHeader,
    /// A header of `len` bytes; what follows is the client's.
    Header { header: ProxyHeader, len: usize },
    /// A bad header: the connection is closed.
    Error(ProxyError),
}

/// Who may send a header on a listener: every peer, or those in its trusted
/// networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProxyPolicy {
    pub(crate) mode: ProxyProtocol,
    /// Empty: any peer may send a header.
    pub(crate) trusted: Vec<ipnet::IpNet>,
}

impl ProxyPolicy {
    /// Whether `peer` may send a header.
    pub(crate) fn trusts(&self, peer: &PeerAddr) -> bool {
        if self.trusted.is_empty() {
            return true;
        }
        match peer {
            PeerAddr::Tcp(a) => {
                let ip = match a.ip() {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                    v4 => v4,
                };
                self.trusted.iter().any(|net| net.contains(&ip))
            }
            // A local peer on a Unix socket is as trusted as the socket's
            // permissions make it.
            PeerAddr::Unix(_) => true,
        }
    }
}

/// Reads a connection's first bytes under `mode` (not `Off`). `balancer` is
/// the connection's peer.
pub(crate) fn parse(buf: &[u8], mode: ProxyProtocol, balancer: &PeerAddr) -> Parsed {
    let no_header = || match mode {
        ProxyProtocol::Required => Parsed::Error(ProxyError::Missing),
        _ => Parsed::NoHeader,
    };
    if buf.is_empty() {
        return Parsed::Incomplete;
    }
    if starts_like(buf, V2_SIGNATURE) {
        return v2(buf, balancer);
    }
    if starts_like(buf, V1_PREFIX) {
        return v1(buf, balancer);
    }
    no_header()
}

/// Whether `buf` starts with `signature`, or is a beginning of it.
fn starts_like(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    buf[..n] == signature[..n]
}

fn v2(buf: &[u8], balancer: &PeerAddr) -> Parsed {
    // Refuse an oversized header as soon as its length is known.
    if buf.len() >= 16 && 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]])) > MAX_HEADER {
        return Parsed::Error(ProxyError::Oversized);
    }
    let parsed = ppp::v2::Header::try_from(buf);
    if parsed.is_incomplete() {
        return Parsed::Incomplete;
    }
    let Ok(h) = parsed else {
        return Parsed::Error(ProxyError::Malformed);
    };
    let (mut source, mut destination) = (None, None);
    if h.command == ppp::v2::Command::Proxy {
        match h.addresses {
            ppp::v2::Addresses::IPv4(a) => {
                source = Some(SocketAddr::from((a.source_address, a.source_port)));
                destination = Some(SocketAddr::from((a.destination_address, a.destination_port)));
            }
            ppp::v2::Addresses::IPv6(a) => {
                source = Some(SocketAddr::from((a.source_address, a.source_port)));
                destination = Some(SocketAddr::from((a.destination_address, a.destination_port)));
            }
            // Unix or unspecified: no address to relay; the peer stands.
            ppp::v2::Addresses::Unix(_) | ppp::v2::Addresses::Unspecified => {}
        }
    }
    let (mut authority, mut unique_id) = (None, None);
    for tlv in h.tlvs() {
        let Ok(tlv) = tlv else {
            return Parsed::Error(ProxyError::Malformed);
        };
        match tlv.kind {
            k if k == ppp::v2::Type::Authority as u8 => {
                authority = std::str::from_utf8(&tlv.value).ok().map(Into::into);
            }
            k if k == ppp::v2::Type::UniqueId as u8 => unique_id = Some(tlv.value.to_vec().into()),
            _ => {} // ALPN, SSL, CRC32C, namespaces, vendors': skipped
        }
    }
    Parsed::Header {
        len: h.len(),
        header: ProxyHeader {
            version: 2,
            source,
            destination,
            balancer: balancer.clone(),
            authority,
            unique_id,
        },
    }
}

fn v1(buf: &[u8], balancer: &PeerAddr) -> Parsed {
    let Some(cr) = buf.iter().take(V1_MAX).position(|&b| b == b'\r') else {
        return if buf.len() >= V1_MAX {
            Parsed::Error(ProxyError::Oversized)
        } else {
            Parsed::Incomplete
        };
    };
    if buf.len() < cr + 2 {
        return Parsed::Incomplete;
    }
    if buf[cr + 1] != b'\n' {
        return Parsed::Error(ProxyError::Malformed);
    }
    let Ok(h) = ppp::v1::Header::try_from(&buf[..cr + 2]) else {
        return Parsed::Error(ProxyError::Malformed);
    };
    let (source, destination) = match h.addresses {
        ppp::v1::Addresses::Tcp4(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((a.destination_address, a.destination_port))),
        ),
        ppp::v1::Addresses::Tcp6(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((a.destination_address, a.destination_port))),
        ),
        ppp::v1::Addresses::Unknown => (None, None),
    };
    Parsed::Header {
        len: cr + 2,
        header: ProxyHeader {
            version: 1,
            source,
            destination,
            balancer: balancer.clone(),
            authority: None,
            unique_id: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer() -> PeerAddr {
        PeerAddr::Tcp(SocketAddr::from(([10, 0, 0, 1], 40000)))
    }

    /// A version 2 header: PROXY over TCP/IPv4 from 192.0.2.7:5555 to
    /// 198.51.100.1:443, with an authority, a unique id and a no-op TLV.
    fn v2_header() -> Vec<u8> {
        let mut tlvs = Vec::new();
        for (kind, value) in [(0x02u8, &b"example.com"[..]), (0x05, b"id-42"), (0x04, b"\0\0")] {
            tlvs.push(kind);
            tlvs.extend_from_slice(&(value.len() as u16).to_be_bytes());
            tlvs.extend_from_slice(value);
        }
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x21); // version 2, PROXY
        h.push(0x11); // IPv4, stream
        h.extend_from_slice(&((12 + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[192, 0, 2, 7, 198, 51, 100, 1]);
        h.extend_from_slice(&5555u16.to_be_bytes());
        h.extend_from_slice(&443u16.to_be_bytes());
        h.extend_from_slice(&tlvs);
        h
    }

    /// A version 2 LOCAL header (a balancer's health check): no address.
    fn v2_local() -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x20, 0x00, 0, 0]);
        h
    }

    fn valid_headers() -> Vec<(Vec<u8>, Option<SocketAddr>)> {
        let client4 = Some(SocketAddr::from(([192, 0, 2, 7], 5555)));
        let client6: Option<SocketAddr> = Some("[2001:db8::7]:5555".parse().unwrap());
        vec![
            (v2_header(), client4),
            (v2_local(), None),
            (b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\n".to_vec(), client4),
            (b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n".to_vec(), client6),
            (b"PROXY UNKNOWN\r\n".to_vec(), None),
        ]
    }

    /// Every valid header, with the client's bytes after it, read in every
    /// possible first piece: a piece shorter than the header is incomplete
    /// (never an error, never "no header"); any longer one gives the header and
    /// its exact length, in both modes.
    #[test]
    fn every_split_point_and_truncation_of_a_valid_header() {
        let payload = b"GET / HTTP/1.1\r\n\r\n";
        for (header, source) in valid_headers() {
            let mut stream = header.clone();
            stream.extend_from_slice(payload);
            for mode in [ProxyProtocol::Optional, ProxyProtocol::Required] {
                for cut in 1..=stream.len() {
                    match parse(&stream[..cut], mode, &balancer()) {
                        Parsed::Incomplete => assert!(cut < header.len(), "{header:?} cut at {cut}: incomplete"),
                        Parsed::Header { header: h, len } => {
                            assert!(cut >= header.len(), "{header:?} cut at {cut}");
                            assert_eq!(len, header.len());
                            assert_eq!(h.source(), source);
                            assert_eq!(h.balancer(), &balancer());
                        }
                        other => panic!("{header:?} cut at {cut}: {other:?}"),
                    }
                }
            }
        }
        let Parsed::Header { header: h, .. } = parse(&v2_header(), ProxyProtocol::Required, &balancer()) else {
            panic!("the v2 header parses");
        };
        assert_eq!(
            (h.version(), h.authority(), h.unique_id()),
            (2, Some("example.com"), Some(&b"id-42"[..]))
        );
        assert_eq!(h.destination(), Some(SocketAddr::from(([198, 51, 100, 1], 443))));
    }

    /// Bytes that do not start like either signature are the client's in
    /// optional mode and a missing header in required mode — decided from the
    /// first byte that differs, without waiting.
    #[test]
    fn other_first_bytes_are_no_header() {
        for data in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"P",
            b"PROXX",
            b"\r\n\r\nx",
            b"\x16\x03\x01",
        ] {
            let expect_incomplete = starts_like(data, V1_PREFIX) || starts_like(data, V2_SIGNATURE);
            let optional = parse(data, ProxyProtocol::Optional, &balancer());
            let required = parse(data, ProxyProtocol::Required, &balancer());
            if expect_incomplete {
                assert_eq!(
                    (optional, required),
                    (Parsed::Incomplete, Parsed::Incomplete),
                    "{data:?}"
                );
            } else {
                assert_eq!(optional, Parsed::NoHeader, "{data:?}");
                assert_eq!(required, Parsed::Error(ProxyError::Missing), "{data:?}");
            }
        }
    }

    #[test]
    fn malformed_and_oversized_headers_are_refused() {
        let mut too_long = V2_SIGNATURE.to_vec();
        too_long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]); // announces 65,535 bytes
        let mut bad_version = v2_header();
        bad_version[12] = 0x31;
        let mut long_v1 = b"PROXY TCP4 ".to_vec();
        long_v1.extend(std::iter::repeat_n(b'1', 200));
        for (data, err) in [
            (too_long, ProxyError::Oversized),
            (bad_version, ProxyError::Malformed),
            (long_v1, ProxyError::Oversized),
            (
                b"PROXY TCP4 not-an-address 1.2.3.4 1 2\r\n".to_vec(),
                ProxyError::Malformed,
            ),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX".to_vec(), ProxyError::Malformed),
        ] {
            assert_eq!(
                parse(&data, ProxyProtocol::Required, &balancer()),
                Parsed::Error(err),
                "{data:?}"
            );
        }
    }

    /// Random bytes, whole and in every piece: never a panic, and never "no
    /// header" for a piece that starts like a signature.
    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut byte = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        };
        for round in 0..2000 {
            // Half of the inputs start with a signature, to reach the parsers.
            let mut data: Vec<u8> = match round % 4 {
                0 => V2_SIGNATURE.to_vec(),
                1 => V1_PREFIX.to_vec(),
                _ => Vec::new(),
            };
            let len = usize::from(byte()) % 200;
            data.extend((0..len).map(|_| byte()));
            for cut in 0..=data.len() {
                for mode in [ProxyProtocol::Optional, ProxyProtocol::Required] {
                    let parsed = parse(&data[..cut], mode, &balancer());
                    if let Parsed::Header { len, .. } = parsed {
                        assert!(len <= cut && len <= MAX_HEADER);
                    }
                }
            }
        }
    }

    #[test]
    fn trusted_networks() {
        let policy = ProxyPolicy {
            mode: ProxyProtocol::Required,
            trusted: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        assert!(policy.trusts(&balancer()));
        assert!(!policy.trusts(&PeerAddr::Tcp(SocketAddr::from(([192, 0, 2, 7], 1)))));
        assert!(policy.trusts(&PeerAddr::Tcp("[::1]:1".parse().unwrap())));
        assert!(
            policy.trusts(&PeerAddr::Tcp("[::ffff:10.1.2.3]:1".parse().unwrap())),
            "IPv4-mapped"
        );
        assert!(ProxyPolicy::default().trusts(&PeerAddr::Tcp(SocketAddr::from(([8, 8, 8, 8], 1)))));
    }
}
