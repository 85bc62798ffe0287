//! Differential, against the `ppp` crate (HAProxy's spec, implemented apart from our
//! encoders): our v1 and v2 headers for any pair of addresses parse with `ppp` to the same
//! addresses, and `ppp`'s v1 header parses with ours to them too.
#![no_main]

use causeway_protocols::proxy;
use libfuzzer_sys::fuzz_target;
use ppp::{v1, v2};
use std::net::{IpAddr, SocketAddr};

/// Source and destination of any of ppp's address structs (v1 and v2, IPv4 and IPv6: four
/// types with the same fields).
macro_rules! pair {
    ($a:expr) => {
        (
            SocketAddr::from(($a.source_address, $a.source_port)),
            SocketAddr::from(($a.destination_address, $a.destination_port)),
        )
    };
}

fuzz_target!(|input: (IpAddr, u16, IpAddr, u16)| {
    let source = SocketAddr::new(input.0, input.1);
    let destination = SocketAddr::new(input.2, input.3);
    if source.is_ipv4() != destination.is_ipv4() {
        return;
    }
    let ours_v1 = proxy::encode_v1(source, destination);
    let text = std::str::from_utf8(&ours_v1).expect("v1 is text");
    let theirs = v1::Header::try_from(text).expect("ppp parses our v1 header");
    let addresses = match theirs.addresses {
        v1::Addresses::Tcp4(a) => pair!(a),
        v1::Addresses::Tcp6(a) => pair!(a),
        v1::Addresses::Unknown => panic!("ppp read our v1 header as UNKNOWN"),
    };
    assert_eq!(addresses, (source, destination));
    let ours_v2 = proxy::encode_v2(source, destination, &[]).expect("no TLVs: fits");
    let theirs = v2::Header::try_from(ours_v2.as_slice()).expect("ppp parses our v2 header");
    let same = match theirs.addresses {
        v2::Addresses::IPv4(a) => pair!(a),
        v2::Addresses::IPv6(a) => pair!(a),
        other => panic!("ppp read our v2 header as {other:?}"),
    };
    assert_eq!(same, (source, destination));
    let their_v1 = v1::Addresses::from((source, destination)).to_string();
    let parsed = proxy::parse(their_v1.as_bytes()).expect("we parse ppp's v1");
    assert_eq!(parsed.addresses, Some((source, destination)));
});
