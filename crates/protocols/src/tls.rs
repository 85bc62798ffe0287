//! The TLS ClientHello, read without terminating TLS: the server name (SNI) and the ALPN
//! protocols a client asks for, so a connection can be routed while it stays encrypted.
//!
//! The ClientHello may span several TLS records (a post-quantum key share makes it exceed
//! one TCP segment, and a large one may exceed one record); the parser reassembles the
//! handshake message from consecutive records and says how many more bytes it needs.

use std::fmt;

/// What a ClientHello tells before any key is exchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// The server name, lower-cased, without a trailing dot; `None` when the client sent none
    /// (e.g. an IP address).
    pub sni: Option<String>,
    /// ALPN protocols in the client's order of preference.
    pub alpn: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not a TLS handshake at all (the first byte is not a handshake record).
    NotTls,
    /// A prefix of a valid ClientHello: at least this many more bytes are needed.
    Incomplete { needed: usize },
    /// TLS, but malformed or not a ClientHello.
    Invalid(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotTls => write!(f, "not a TLS handshake"),
            Error::Incomplete { needed } => {
                write!(f, "incomplete ClientHello: {needed} more bytes needed")
            }
            Error::Invalid(why) => write!(f, "invalid ClientHello: {why}"),
        }
    }
}

impl std::error::Error for Error {}

const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
const RECORD_HEADER: usize = 5;
/// Bound on the reassembled handshake message (a ClientHello is a few KiB at most).
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;
/// Bound on the records carrying one ClientHello (one or two in practice; more when a client
/// fragments it on purpose): each record completed costs one parse from the start.
pub const MAX_CLIENT_HELLO_RECORDS: usize = 64;

/// Parses the ClientHello at the start of `bytes` (what a client sent first).
pub fn client_hello(bytes: &[u8]) -> Result<ClientHello, Error> {
    let message = reassemble(bytes)?;
    parse_client_hello(&message)
}

/// Collects the first handshake message from consecutive handshake records.
fn reassemble(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    match bytes.first() {
        None => {
            return Err(Error::Incomplete {
                needed: RECORD_HEADER,
            });
        }
        Some(&HANDSHAKE) => {}
        Some(_) => return Err(Error::NotTls),
    }
    let mut message = Vec::new();
    let mut at = 0;
    for _ in 0..MAX_CLIENT_HELLO_RECORDS {
        let Some(header) = bytes.get(at..at + RECORD_HEADER) else {
            return Err(Error::Incomplete {
                needed: at + RECORD_HEADER - bytes.len(),
            });
        };
        if header[0] != HANDSHAKE {
            return Err(Error::Invalid(
                "the ClientHello is interrupted by another record type",
            ));
        }
        if header[1] != 3 || header[2] > 4 {
            return Err(if at == 0 {
                Error::NotTls
            } else {
                Error::Invalid("bad record version")
            });
        }
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if length == 0 || length > 16384 + 2048 {
            return Err(Error::Invalid("bad record length"));
        }
        let body_at = at + RECORD_HEADER;
        let Some(body) = bytes.get(body_at..body_at + length) else {
            return Err(Error::Incomplete {
                needed: body_at + length - bytes.len(),
            });
        };
        message.extend_from_slice(body);
        at = body_at + length;
        if message.len() >= 4 {
            if message[0] != CLIENT_HELLO {
                return Err(Error::Invalid(
                    "the first handshake message is not a ClientHello",
                ));
            }
            let total = 4 + u24(&message[1..4]);
            if total > MAX_CLIENT_HELLO {
                return Err(Error::Invalid("ClientHello too large"));
            }
            if message.len() >= total {
                message.truncate(total);
                return Ok(message);
            }
        }
    }
    Err(Error::Invalid("the ClientHello spans too many records"))
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// A cursor over a complete message: running short is malformation, not "need more".
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(Error::Invalid("a length runs past the end"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<usize, Error> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u16(&mut self) -> Result<usize, Error> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A length-prefixed block as a reader of its own.
    fn block8(&mut self) -> Result<Reader<'a>, Error> {
        let n = self.u8()?;
        Ok(Reader(self.take(n)?))
    }

    fn block16(&mut self) -> Result<Reader<'a>, Error> {
        let n = self.u16()?;
        Ok(Reader(self.take(n)?))
    }
}

fn parse_client_hello(message: &[u8]) -> Result<ClientHello, Error> {
    let mut r = Reader(&message[4..]);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.block8()?; // legacy_session_id
    r.block16()?; // cipher_suites
    r.block8()?; // legacy_compression_methods
    let mut hello = ClientHello::default();
    if r.0.is_empty() {
        return Ok(hello); // no extensions (very old clients)
    }
    let mut extensions = r.block16()?;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let mut data = extensions.block16()?;
        match kind {
            0x0000 => hello.sni = server_name(&mut data)?,
            0x0010 => hello.alpn = alpn(&mut data)?,
            _ => {}
        }
    }
    Ok(hello)
}

fn server_name(data: &mut Reader<'_>) -> Result<Option<String>, Error> {
    let mut list = data.block16()?;
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.block16()?.0;
        if kind == 0 {
            // `name.` is `name` (absolute form; rustls strips the dot too): routed alike.
            let name = name.strip_suffix(b".").unwrap_or(name);
            if name.is_empty()
                || !name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return Err(Error::Invalid("the server name is not a host name"));
            }
            return Ok(Some(String::from_utf8_lossy(name).to_ascii_lowercase()));
        }
    }
    Ok(None)
}

fn alpn(data: &mut Reader<'_>) -> Result<Vec<String>, Error> {
    let mut list = data.block16()?;
    let mut protocols = Vec::new();
    while !list.0.is_empty() {
        let name = list.block8()?.0;
        if name.is_empty() {
            return Err(Error::Invalid("an empty ALPN protocol name"));
        }
        protocols.push(String::from_utf8_lossy(name).into_owned());
    }
    Ok(protocols)
}

/// Builds ClientHello records (for tests here and elsewhere): `sni`, `alpn`, and `padding`
/// bytes of an unknown extension to reach realistic sizes, split into records of at most
/// `record_size` bytes.
pub fn build_client_hello(
    sni: Option<&str>,
    alpn: &[&str],
    padding: usize,
    record_size: usize,
) -> Vec<u8> {
    let mut extensions = Vec::new();
    if let Some(name) = sni {
        let mut entry = vec![0u8];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        push_extension(&mut extensions, 0x0000, &list);
    }
    if !alpn.is_empty() {
        let mut names = Vec::new();
        for p in alpn {
            names.push(p.len() as u8);
            names.extend_from_slice(p.as_bytes());
        }
        let mut list = (names.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&names);
        push_extension(&mut extensions, 0x0010, &list);
    }
    if padding > 0 {
        push_extension(&mut extensions, 0xfe0d, &vec![0x5a; padding]);
    }
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x11; 32]);
    body.push(32);
    body.extend_from_slice(&[0x22; 32]);
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]);
    body.extend_from_slice(&[0x01, 0x00]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut message = vec![CLIENT_HELLO];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    let mut records = Vec::new();
    for chunk in message.chunks(record_size.max(1)) {
        records.extend_from_slice(&[HANDSHAKE, 0x03, 0x01]);
        records.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        records.extend_from_slice(chunk);
    }
    records
}

fn push_extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_sni_and_alpn() {
        let bytes = build_client_hello(
            Some("To2E-QMGR1.chl.mq.ibm.com"),
            &["h2", "http/1.1"],
            0,
            16384,
        );
        let hello = client_hello(&bytes).unwrap();
        assert_eq!(hello.sni.as_deref(), Some("to2e-qmgr1.chl.mq.ibm.com"));
        assert_eq!(hello.alpn, ["h2", "http/1.1"]);
    }

    #[test]
    fn a_large_hello_over_several_records() {
        let bytes = build_client_hello(Some("echo.causeway.test"), &[], 20_000, 16384);
        assert!(bytes.len() > 20_000);
        assert_eq!(
            client_hello(&bytes).unwrap().sni.as_deref(),
            Some("echo.causeway.test")
        );
    }

    #[test]
    fn tells_not_tls_and_garbage_apart() {
        assert_eq!(client_hello(b"TSH \x00\x00\x01\x0c"), Err(Error::NotTls));
        assert_eq!(client_hello(b"SSH-2.0-OpenSSH_9.2"), Err(Error::NotTls));
        assert_eq!(client_hello(b"8=FIX.4.4\x019=5\x01"), Err(Error::NotTls));
        assert_eq!(
            client_hello(&[0x16, 0x03, 0x01, 0x00, 0x00]),
            Err(Error::Invalid("bad record length"))
        );
        let mut not_hello = build_client_hello(None, &[], 0, 16384);
        not_hello[5] = 0x02; // ServerHello
        assert!(matches!(client_hello(&not_hello), Err(Error::Invalid(_))));
    }

    #[test]
    fn the_server_name_is_normalised() {
        for sent in [
            "Echo.Causeway.Test.",
            "echo.causeway.test",
            "ECHO.causeway.test",
        ] {
            let bytes = build_client_hello(Some(sent), &[], 0, 16384);
            let sni = client_hello(&bytes).unwrap().sni;
            assert_eq!(sni.as_deref(), Some("echo.causeway.test"), "{sent}");
        }
        let bytes = build_client_hello(Some("."), &[], 0, 16384);
        assert!(matches!(client_hello(&bytes), Err(Error::Invalid(_))));
    }

    /// A ClientHello over at most MAX_CLIENT_HELLO_RECORDS records parses; over more, it is
    /// refused as soon as the record past the limit begins (not when it is complete).
    #[test]
    fn records_per_hello_are_bounded() {
        let length = build_client_hello(Some("a.example"), &[], 2000, 16384).len() - 5;
        let fits = length.div_ceil(MAX_CLIENT_HELLO_RECORDS);
        let bytes = build_client_hello(Some("a.example"), &[], 2000, fits);
        assert_eq!(
            client_hello(&bytes).unwrap().sni.as_deref(),
            Some("a.example")
        );
        let too_many = build_client_hello(Some("a.example"), &[], 2000, 8);
        let past_limit = MAX_CLIENT_HELLO_RECORDS * (5 + 8) + 1;
        for bytes in [&too_many[..], &too_many[..past_limit]] {
            assert_eq!(
                client_hello(bytes),
                Err(Error::Invalid("the ClientHello spans too many records"))
            );
        }
    }

    #[test]
    fn no_sni_is_not_an_error() {
        let bytes = build_client_hello(None, &["x"], 0, 100);
        assert_eq!(
            client_hello(&bytes).unwrap(),
            ClientHello {
                sni: None,
                alpn: vec!["x".into()]
            }
        );
    }

    proptest! {
        #[test]
        fn every_split_and_every_prefix(
            sni in proptest::option::of("[a-z0-9]{1,20}(\\.[a-z0-9-]{1,20}){0,3}"),
            alpn in proptest::collection::vec("[a-z0-9/.]{1,12}", 0..4),
            padding in 0usize..3000,
            // (At least 64 bytes a record: at most MAX_CLIENT_HELLO_RECORDS of them.)
            record_size in 64usize..4000,
        ) {
            let alpn_refs: Vec<&str> = alpn.iter().map(String::as_str).collect();
            let bytes = build_client_hello(sni.as_deref(), &alpn_refs, padding, record_size);
            let hello = client_hello(&bytes).unwrap();
            prop_assert_eq!(hello.sni, sni);
            prop_assert_eq!(hello.alpn, alpn);
            // Every strict prefix asks for more, and says how much at least.
            for cut in [0, 1, 4, 5, bytes.len() / 2, bytes.len() - 1] {
                match client_hello(&bytes[..cut]) {
                    Err(Error::Incomplete { needed }) => prop_assert!(needed >= 1 && cut + needed <= bytes.len()),
                    other => prop_assert!(false, "prefix {} of {}: {:?}", cut, bytes.len(), other),
                }
            }
            // Bytes after the ClientHello (early data, the next flight) change nothing.
            let mut more = bytes.clone();
            more.extend_from_slice(b"\x17\x03\x03\x00\x05hello");
            prop_assert!(client_hello(&more).is_ok());
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = client_hello(&bytes);
        }

        #[test]
        fn corrupted_hellos_never_panic(
            flips in proptest::collection::vec((0usize..400, any::<u8>()), 1..8),
        ) {
            let mut bytes = build_client_hello(Some("a.example"), &["h2"], 100, 150);
            for (at, value) in flips {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            let _ = client_hello(&bytes);
        }
    }
}
