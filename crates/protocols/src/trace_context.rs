//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` header that
//! carries a trace across a hop (here: a CONNECT tunnel, the authorizer's gRPC call), read
//! strictly and written in version 00.

use std::fmt::Write;

/// The parts of a `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    /// The sender's span: the parent of the receiver's.
    pub span_id: [u8; 8],
    /// Bit 0: the sender records (samples) this trace.
    pub flags: u8,
}

impl TraceParent {
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// `00-<trace id>-<span id>-<flags>`, lowercase hex.
    pub fn to_header(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        hex(&mut out, &self.trace_id);
        out.push('-');
        hex(&mut out, &self.span_id);
        let _ = write!(out, "-{:02x}", self.flags);
        out
    }

    /// Reads a `traceparent` value. `None` for anything the specification says to ignore:
    /// a wrong length, uppercase or non-hex digits, version `ff`, an all-zero trace or span
    /// id. A later version is read for its first four fields, as the specification asks.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let bytes = header.trim_matches([' ', '\t']).as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = from_hex::<1>(&bytes[0..2])?[0];
        let exact = match version {
            0xff => return None,
            0 => bytes.len() == 55,
            _ => bytes.len() == 55 || bytes[55] == b'-',
        };
        if !exact || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = from_hex::<16>(&bytes[3..35])?;
        let span_id = from_hex::<8>(&bytes[36..52])?;
        let flags = from_hex::<1>(&bytes[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }
}

/// A `tracestate` worth passing on: at most 512 bytes (the specification lets a hop drop
/// longer ones), printable ASCII only. `None` otherwise.
pub fn tracestate(header: &str) -> Option<&str> {
    let ok = header.len() <= 512 && header.bytes().all(|b| (0x20..0x7f).contains(&b));
    (ok && !header.trim().is_empty()).then_some(header)
}

/// Lowercase hex of `bytes`, appended.
pub fn hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

fn from_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Lowercase only: the specification forbids uppercase hex.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_the_specifications_example() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        assert!(parent.sampled());
        assert_eq!(
            parent.span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(parent.to_header(), EXAMPLE);
    }

    #[test]
    fn refuses_what_the_specification_says_to_ignore() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_later_version_is_read_for_what_it_shares() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert!(TraceParent::parse(later).is_some());
    }

    #[test]
    fn tracestate_is_bounded_and_printable() {
        assert_eq!(tracestate("congo=t61rcWkgMzE"), Some("congo=t61rcWkgMzE"));
        assert_eq!(tracestate(&"a".repeat(513)), None);
        assert_eq!(tracestate("a=b\r\nx: y"), None);
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back(t in any::<[u8; 16]>(), s in any::<[u8; 8]>(), f: u8) {
            prop_assume!(t != [0; 16] && s != [0; 8]);
            let parent = TraceParent { trace_id: t, span_id: s, flags: f };
            prop_assert_eq!(TraceParent::parse(&parent.to_header()), Some(parent));
        }

        #[test]
        fn never_panics(header in ".{0,80}") {
            let _ = TraceParent::parse(&header);
            let _ = tracestate(&header);
        }
    }
}
