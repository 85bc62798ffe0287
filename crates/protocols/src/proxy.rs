//! PROXY protocol v1 and v2 headers (HAProxy's spec), parsed with the `ppp` crate and turned
//! into one owned value: the addresses the load balancer saw, the TLVs, and how many bytes
//! the header took. Pure: no I/O; the caller peeks, parses, then consumes `length` bytes.

use ppp::v2;
use std::net::SocketAddr;

/// The v2 signature; a v1 header starts with `PROXY `.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// A v1 header is at most 107 bytes, CRLF included.
pub const V1_MAX: usize = 107;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// Bytes the header takes at the start of the stream.
    pub length: usize,
    /// Source and destination as the sender saw them; `None` for a LOCAL command (the
    /// balancer's own health check) or an UNKNOWN / unix / unspecified address family.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// v2 TLVs in order: (type, value).
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

impl ProxyHeader {
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }
}

/// Well-known v2 TLV types.
pub mod tlv {
    pub const ALPN: u8 = 0x01;
    pub const AUTHORITY: u8 = 0x02;
    pub const CRC32C: u8 = 0x03;
    pub const NOOP: u8 = 0x04;
    pub const UNIQUE_ID: u8 = 0x05;
    pub const SSL: u8 = 0x20;
    pub const NETNS: u8 = 0x30;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes do not start a PROXY header.
    NotProxy,
    /// A header has begun; more bytes are needed.
    Incomplete,
    /// A header has begun and is wrong.
    Invalid(String),
}

/// Parses the header at the start of `bytes` (which may hold more after it).
pub fn parse(bytes: &[u8]) -> Result<ProxyHeader, Error> {
    let prefix_of = |signature: &[u8]| {
        let n = bytes.len().min(signature.len());
        bytes[..n] == signature[..n]
    };
    if prefix_of(V2_SIGNATURE) {
        if bytes.len() < 16 {
            return Err(Error::Incomplete);
        }
        return v2(bytes);
    }
    if prefix_of(V1_PREFIX) {
        if bytes.len() < V1_PREFIX.len() {
            return Err(Error::Incomplete);
        }
        return v1(bytes);
    }
    Err(Error::NotProxy)
}

fn v2(bytes: &[u8]) -> Result<ProxyHeader, Error> {
    let total = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if bytes.len() < total {
        return Err(Error::Incomplete);
    }
    let header = v2::Header::try_from(&bytes[..total])
        .map_err(|e| Error::Invalid(format!("PROXY v2: {e}")))?;
    let addresses = match (header.command, header.addresses) {
        (v2::Command::Local, _) => None,
        (_, v2::Addresses::IPv4(a)) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        (_, v2::Addresses::IPv6(a)) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        _ => None,
    };
    let tlvs = header
        .tlvs()
        .map(|t| t.map(|t| (t.kind, t.value.to_vec())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Invalid(format!("PROXY v2 TLV: {e}")))?;
    Ok(ProxyHeader {
        version: 2,
        length: total,
        addresses,
        tlvs,
    })
}

fn v1(bytes: &[u8]) -> Result<ProxyHeader, Error> {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() >= V1_MAX {
            Err(Error::Invalid("PROXY v1: no CRLF within 107 bytes".into()))
        } else {
            Err(Error::Incomplete)
        };
    };
    let line = &bytes[..end + 2];
    let header =
        ppp::v1::Header::try_from(line).map_err(|e| Error::Invalid(format!("PROXY v1: {e}")))?;
    let addresses = match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        ppp::v1::Addresses::Tcp6(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        ppp::v1::Addresses::Unknown => None,
    };
    Ok(ProxyHeader {
        version: 1,
        length: line.len(),
        addresses,
        tlvs: Vec::new(),
    })
}

/// A v1 header for a TCP connection from `source` to `destination`.
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// What follows the 16 fixed bytes of a v2 header: its length field is 16 bits.
pub const MAX_V2_BODY: usize = 65535;

/// A v2 header would be longer than its 16-bit length field can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub body: usize,
}

/// A v2 PROXY header for a TCP connection, with `tlvs` in order; refused when the addresses
/// and TLVs do not fit in [`MAX_V2_BODY`] bytes.
pub fn encode_v2(
    source: SocketAddr,
    destination: SocketAddr,
    tlvs: &[(u8, &[u8])],
) -> Result<Vec<u8>, TooLarge> {
    let (source, destination) = same_family(source, destination);
    let addresses = if source.is_ipv4() { 12 } else { 36 };
    let body = addresses + tlvs.iter().map(|(_, v)| 3 + v.len()).sum::<usize>();
    if body > MAX_V2_BODY {
        return Err(TooLarge { body });
    }
    let mut builder = v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (source, destination),
    );
    for (kind, value) in tlvs {
        // Writing to a Vec cannot fail, and every length fits (checked above).
        builder = builder.write_tlv(*kind, value).expect("in-memory write");
    }
    Ok(builder.build().expect("in-memory write"))
}

/// Both addresses in one family (v1 and v2 carry one): an IPv4 address mapped into IPv6
/// when the other one is IPv6.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |s: SocketAddr| match s {
        SocketAddr::V4(v4) => SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port())),
        v6 => v6,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (v6(a), v6(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_round_trip_and_what_follows_stays() {
        let mut bytes = encode_v1(addr("192.0.2.1:5000"), addr("10.0.0.1:10100"));
        assert_eq!(bytes, b"PROXY TCP4 192.0.2.1 10.0.0.1 5000 10100\r\n");
        bytes.extend_from_slice(b"payload");
        let h = parse(&bytes).unwrap();
        assert_eq!(h.version, 1);
        assert_eq!(&bytes[h.length..], b"payload");
        assert_eq!(
            h.addresses,
            Some((addr("192.0.2.1:5000"), addr("10.0.0.1:10100")))
        );
        let v6 = encode_v1(addr("[2001:db8::1]:1"), addr("[::1]:2"));
        assert_eq!(
            parse(&v6).unwrap().addresses,
            Some((addr("[2001:db8::1]:1"), addr("[::1]:2")))
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().addresses, None);
    }

    #[test]
    fn v2_round_trip_with_tlvs() {
        let mut bytes = encode_v2(
            addr("[2001:db8::7]:4000"),
            addr("127.0.0.1:10100"),
            &[(tlv::AUTHORITY, b"mq.example"), (0xE0, b"custom")],
        )
        .unwrap();
        let length = bytes.len();
        bytes.extend_from_slice(b"\x16\x03\x01");
        let h = parse(&bytes).unwrap();
        assert_eq!(h.version, 2);
        assert_eq!(h.length, length);
        assert_eq!(
            h.addresses,
            Some((addr("[2001:db8::7]:4000"), addr("[::ffff:127.0.0.1]:10100")))
        );
        assert_eq!(h.tlv(tlv::AUTHORITY), Some(&b"mq.example"[..]));
        assert_eq!(h.tlv(0xE0), Some(&b"custom"[..]));
    }

    /// The largest header that fits is encoded and parses; one byte more is refused, not a
    /// panic.
    #[test]
    fn a_v2_header_over_its_length_field_is_refused() {
        let (s, d) = (addr("1.2.3.4:1"), addr("5.6.7.8:2"));
        let fits = vec![b'x'; MAX_V2_BODY - 12 - 3];
        let header = encode_v2(s, d, &[(0xE0, &fits)]).unwrap();
        assert_eq!(parse(&header).unwrap().tlv(0xE0), Some(&fits[..]));
        let over = [(0xE0, &fits[..]), (0xE1, &b""[..])];
        assert_eq!(encode_v2(s, d, &over), Err(TooLarge { body: 65538 }));
    }

    #[test]
    fn not_proxy_incomplete_and_invalid() {
        assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Err(Error::NotProxy));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::NotProxy));
        assert_eq!(parse(b""), Err(Error::Incomplete));
        assert_eq!(parse(b"PROX"), Err(Error::Incomplete));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Err(Error::Incomplete));
        assert_eq!(parse(&V2_SIGNATURE[..7]), Err(Error::Incomplete));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 nope 1 2\r\n"),
            Err(Error::Invalid(_))
        ));
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Err(Error::Invalid(_))));
        let mut bad_version = encode_v2(addr("1.2.3.4:1"), addr("5.6.7.8:2"), &[]).unwrap();
        bad_version[12] = 0x31;
        assert!(matches!(parse(&bad_version), Err(Error::Invalid(_))));
    }

    proptest! {
        /// Every prefix of a valid header is Incomplete; the whole one parses to the same
        /// addresses and TLVs whatever follows it.
        #[test]
        fn prefixes_are_incomplete_and_wholes_parse(
            a in any::<[u8; 4]>(), b in any::<[u8; 16]>(), sp in 1u16.., dp in 1u16..,
            tlvs in proptest::collection::vec((0xE0u8..=0xEF, proptest::collection::vec(any::<u8>(), 0..40)), 0..4),
            v1 in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let source = SocketAddr::from((a, sp));
            let destination = SocketAddr::from((b, dp));
            let refs: Vec<(u8, &[u8])> = tlvs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let header = if v1 { encode_v1(source, destination) } else { encode_v2(source, destination, &refs).unwrap() };
            for n in 0..header.len() {
                prop_assert_eq!(parse(&header[..n]), Err(Error::Incomplete), "prefix {}", n);
            }
            let mut bytes = header.clone();
            bytes.extend_from_slice(&tail);
            let parsed = parse(&bytes).unwrap();
            prop_assert_eq!(parsed.length, header.len());
            let (s, d) = same_family(source, destination);
            prop_assert_eq!(parsed.addresses, Some((s, d)));
            if !v1 {
                prop_assert_eq!(parsed.tlvs, tlvs);
            }
        }

        /// Arbitrary bytes never panic, and a claimed header never exceeds the input.
        #[test]
        fn arbitrary_input_is_handled(bytes in proptest::collection::vec(any::<u8>(), 0..300), v2 in any::<bool>()) {
            let mut input = if v2 { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
            input.extend_from_slice(&bytes);
            for candidate in [&input[..], &bytes[..]] {
                if let Ok(h) = parse(candidate) {
                    prop_assert!(h.length <= candidate.len());
                }
            }
        }
    }
}
