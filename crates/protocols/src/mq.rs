//! IBM MQ: the channel a client asks for, from the two places a gateway can see it — the TLS
//! SNI of MQ 8+ clients (`*.chl.mq.ibm.com`) and the first segment of a plaintext connection
//! (TSH/TSHC/TSHM with INITIAL_DATA and its ID structure), ASCII or EBCDIC.

use std::fmt;

pub const SNI_SUFFIX: &str = ".chl.mq.ibm.com";
/// Channel names are at most 20 characters, queue manager names 48.
pub const MAX_CHANNEL: usize = 20;
pub const MAX_QUEUE_MANAGER: usize = 48;
/// Longest first segment accepted: an INITIAL_DATA is a few hundred bytes.
pub const MAX_SEGMENT: usize = 32 * 1024;

/// Whether `c` may appear in a channel or queue manager name.
pub fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '%')
}

/// The SNI an MQ client sends for `channel` (IBM's encoding).
pub fn channel_to_sni(channel: &str) -> String {
    let mut sni = String::new();
    for c in channel.chars() {
        match c {
            'A'..='Z' => sni.push(c.to_ascii_lowercase()),
            '0'..='9' => sni.push(c),
            _ => sni.push_str(&format!("{:02x}-", c as u32)),
        }
    }
    sni + SNI_SUFFIX
}

/// The channel in an MQ SNI: `None` when `sni` is not one (no `.chl.mq.ibm.com`),
/// `Some(Err)` when it is but does not decode to a valid channel name.
pub fn channel_from_sni(sni: &str) -> Option<Result<String, &'static str>> {
    let sni = sni.to_ascii_lowercase();
    let encoded = sni.strip_suffix(SNI_SUFFIX)?;
    Some(decode(encoded.as_bytes()))
}

fn decode(encoded: &[u8]) -> Result<String, &'static str> {
    let hex = |b: u8| (b as char).to_digit(16).filter(|_| !b.is_ascii_uppercase());
    let mut channel = String::new();
    let mut i = 0;
    while i < encoded.len() {
        // An escape is exactly two hex digits and `-`; nothing else has a `-`, so reading
        // left to right is unambiguous.
        if encoded.get(i + 2) == Some(&b'-') {
            let (Some(hi), Some(lo)) = (hex(encoded[i]), hex(encoded[i + 1])) else {
                return Err("an escape that is not two hex digits");
            };
            let c = char::from_u32(hi * 16 + lo).unwrap_or('\0');
            if !name_char(c) || c.is_ascii_uppercase() || c.is_ascii_digit() {
                return Err(
                    "an escape of a character a channel name cannot have, or need not escape",
                );
            }
            channel.push(c);
            i += 3;
            continue;
        }
        match encoded[i] {
            b @ b'a'..=b'z' => channel.push(b.to_ascii_uppercase() as char),
            b @ b'0'..=b'9' => channel.push(b as char),
            _ => return Err("a character outside IBM's SNI encoding"),
        }
        i += 1;
    }
    match channel.len() {
        0 => Err("an empty channel name"),
        n if n > MAX_CHANNEL => Err("a channel name longer than 20 characters"),
        _ => Ok(channel),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Tsh,
    Tshc,
    Tshm,
}

/// What the first segment of a plaintext MQ connection says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initial {
    pub segment: Segment,
    pub ebcdic: bool,
    pub channel: String,
    /// Absent when the client sent a short ID structure (or a blank name).
    pub queue_manager: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A valid start so far; at least this many more bytes are needed.
    Incomplete { needed: usize },
    /// The bytes are not an MQ transmission segment header.
    NotMq,
    /// A segment header, but not the first flow of a client; why, for logs.
    Invalid(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Incomplete { needed } => write!(f, "{needed} more bytes needed"),
            Error::NotMq => write!(f, "not an MQ segment"),
            Error::Invalid(why) => write!(f, "invalid MQ initial data: {why}"),
        }
    }
}

const IDS: [(&[u8; 4], Segment, bool); 6] = [
    (b"TSH ", Segment::Tsh, false),
    (b"TSHC", Segment::Tshc, false),
    (b"TSHM", Segment::Tshm, false),
    (&[0xE3, 0xE2, 0xC8, 0x40], Segment::Tsh, true),
    (&[0xE3, 0xE2, 0xC8, 0xC3], Segment::Tshc, true),
    (&[0xE3, 0xE2, 0xC8, 0xD4], Segment::Tshm, true),
];
const ID_ASCII: &[u8; 4] = b"ID  ";
const ID_EBCDIC: &[u8; 4] = &[0xC9, 0xC4, 0x40, 0x40];
const INITIAL_DATA: u8 = 0x01;

/// Whether `bytes` (at least one) may be the start of an MQ segment: for telling MQ from
/// TLS and from anything else on one listener.
pub fn looks_like_mq(bytes: &[u8]) -> bool {
    let n = bytes.len().min(4);
    IDS.iter().any(|(id, _, _)| id[..n] == bytes[..n])
}

/// Code pages of the EBCDIC family MQ clients and queue managers use.
fn ebcdic_ccsid(ccsid: u16) -> bool {
    matches!(
        ccsid,
        37 | 273 | 277 | 278 | 280 | 284 | 285 | 297 | 500 | 871 | 875 | 924 | 1047 | 1140..=1149
    )
}

/// EBCDIC (code page 500/037, which agree here) to ASCII for the characters of MQ names and
/// the blank that pads them; `None` for anything else.
fn from_ebcdic(b: u8) -> Option<char> {
    let c = match b {
        0x40 => ' ',
        0x4B => '.',
        0x6C => '%',
        0x6D => '_',
        0x61 => '/',
        0x81..=0x89 => (b'a' + (b - 0x81)) as char,
        0x91..=0x99 => (b'j' + (b - 0x91)) as char,
        0xA2..=0xA9 => (b's' + (b - 0xA2)) as char,
        0xC1..=0xC9 => (b'A' + (b - 0xC1)) as char,
        0xD1..=0xD9 => (b'J' + (b - 0xD1)) as char,
        0xE2..=0xE9 => (b'S' + (b - 0xE2)) as char,
        0xF0..=0xF9 => (b'0' + (b - 0xF0)) as char,
        _ => return None,
    };
    Some(c)
}

/// A blank-padded name field: `None` when blank, an error when it has a character no MQ name
/// can have.
fn name(field: &[u8], ebcdic: bool) -> Result<Option<String>, Error> {
    let text: Option<String> = field
        .iter()
        .map(|&b| match ebcdic {
            true => from_ebcdic(b),
            false => Some(b as char).filter(|c| c.is_ascii()),
        })
        .collect();
    let text = text.ok_or(Error::Invalid(
        "a name with a character MQ names cannot have",
    ))?;
    // Padded with blanks (some clients pad with NULs: treated alike).
    let trimmed = text.trim_end_matches([' ', '\0']);
    if !trimmed.chars().all(name_char) {
        return Err(Error::Invalid(
            "a name with a character MQ names cannot have",
        ));
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_string()))
}

/// The first segment at the start of `bytes`: it must be INITIAL_DATA carrying an ID
/// structure with the channel name (and the queue manager name when the ID is long enough).
pub fn initial_data(bytes: &[u8]) -> Result<Initial, Error> {
    let need = |n: usize| match bytes.len() >= n {
        true => Ok(()),
        false => Err(Error::Incomplete {
            needed: n - bytes.len(),
        }),
    };
    if bytes.is_empty() {
        return Err(Error::Incomplete { needed: 4 });
    }
    if !looks_like_mq(bytes) {
        return Err(Error::NotMq);
    }
    need(8)?;
    let &(_, segment, ebcdic_id) = IDS
        .iter()
        .find(|(id, _, _)| id[..] == bytes[..4])
        .expect("looks_like_mq matched all four bytes");
    let length = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let m = if segment == Segment::Tshm { 8 } else { 0 };
    let header = 28 + m;
    let id = header;
    if length > MAX_SEGMENT {
        return Err(Error::Invalid("a segment longer than allowed"));
    }
    if length < id + 24 + MAX_CHANNEL {
        return Err(Error::Invalid("a segment too short for an ID structure"));
    }
    need(header)?;
    let big_endian = match bytes[m + 8] {
        1 => true,
        2 => false,
        _ => return Err(Error::Invalid("an unknown byte order")),
    };
    if bytes[m + 9] != INITIAL_DATA {
        return Err(Error::Invalid("the first segment is not INITIAL_DATA"));
    }
    let ccsid_bytes = [bytes[m + 24], bytes[m + 25]];
    let ccsid = match big_endian {
        true => u16::from_be_bytes(ccsid_bytes),
        false => u16::from_le_bytes(ccsid_bytes),
    };
    let ebcdic = ebcdic_id || ebcdic_ccsid(ccsid);
    need(id + 4)?;
    let eye = if ebcdic { ID_EBCDIC } else { ID_ASCII };
    if &bytes[id..id + 4] != eye {
        return Err(Error::Invalid("INITIAL_DATA without an ID structure"));
    }
    let channel_at = id + 24;
    let qmgr_at = id + 48;
    let has_qmgr = length >= qmgr_at + MAX_QUEUE_MANAGER;
    need(if has_qmgr {
        qmgr_at + MAX_QUEUE_MANAGER
    } else {
        channel_at + MAX_CHANNEL
    })?;
    let channel = name(&bytes[channel_at..channel_at + MAX_CHANNEL], ebcdic)?
        .ok_or(Error::Invalid("a blank channel name"))?;
    let queue_manager = match has_qmgr {
        true => name(&bytes[qmgr_at..qmgr_at + MAX_QUEUE_MANAGER], ebcdic)?,
        false => None,
    };
    Ok(Initial {
        segment,
        ebcdic,
        channel,
        queue_manager,
    })
}

/// Test support: a first segment as a client sends it, for tests and the demo. The ID
/// structure is filled with what this parser (and Wireshark's dissector) reads; the rest of
/// its fields are zero.
pub fn encode_initial(
    segment: Segment,
    ebcdic: bool,
    channel: &str,
    queue_manager: &str,
) -> Vec<u8> {
    let to_ebcdic = |c: char| -> u8 {
        (0..=255u8)
            .find(|&b| from_ebcdic(b) == Some(c))
            .unwrap_or(0x40)
    };
    let text = |s: &str, width: usize| -> Vec<u8> {
        let padded = format!("{s:<width$}");
        padded
            .chars()
            .map(|c| if ebcdic { to_ebcdic(c) } else { c as u8 })
            .collect()
    };
    let m = if segment == Segment::Tshm { 8 } else { 0 };
    let id_length = 48 + MAX_QUEUE_MANAGER + 8;
    let length = 28 + m + id_length;
    let struct_id = IDS
        .iter()
        .find(|(_, s, e)| *s == segment && *e == ebcdic)
        .map(|(id, _, _)| **id)
        .unwrap();
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&struct_id);
    out.extend_from_slice(&(length as u32).to_be_bytes());
    out.extend(std::iter::repeat_n(0, m));
    out.push(1); // big-endian integers
    out.push(INITIAL_DATA);
    out.extend([0u8; 14]); // control flags, reserved, LUW id, encoding
    out.extend_from_slice(&(if ebcdic { 500u16 } else { 819u16 }).to_be_bytes());
    out.extend([0u8; 2]);
    out.extend_from_slice(if ebcdic { ID_EBCDIC } else { ID_ASCII });
    out.push(13); // FAP level
    out.extend([0u8; 19]); // flags, error flags, max message batch, transmission size...
    out.extend(text(channel, MAX_CHANNEL));
    out.extend([0u8; 4]); // remaining fields before the queue manager
    out.extend(text(queue_manager, MAX_QUEUE_MANAGER));
    out.extend([0u8; 8]);
    debug_assert_eq!(out.len(), length);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ibms_published_examples() {
        for (channel, sni) in [
            ("TO.QMGR1", "to2e-qmgr1.chl.mq.ibm.com"),
            ("to.qmgr1", "74-6f-2e-71-6d-67-72-1.chl.mq.ibm.com"),
            ("My.Test.CHL", "m79-2e-t65-73-74-2e-chl.chl.mq.ibm.com"),
            ("APP1.TLS", "app12e-tls.chl.mq.ibm.com"),
        ] {
            assert_eq!(channel_to_sni(channel), sni);
            assert_eq!(channel_from_sni(sni), Some(Ok(channel.to_string())));
        }
        assert_eq!(
            channel_from_sni("TO2E-QMGR1.CHL.MQ.IBM.COM"),
            Some(Ok("TO.QMGR1".into())),
            "DNS names compare without case"
        );
    }

    #[test]
    fn malformed_snis() {
        assert_eq!(channel_from_sni("mq.example.com"), None);
        for bad in [
            ".chl.mq.ibm.com",
            "a2g-.chl.mq.ibm.com",
            "a-.chl.mq.ibm.com",
            "2-.chl.mq.ibm.com",
            "41-.chl.mq.ibm.com", // 'A' need not be escaped
            "21-.chl.mq.ibm.com", // '!' is not a channel character
            "a.b.chl.mq.ibm.com",
            "abcdefghijklmnopqrstu.chl.mq.ibm.com",
        ] {
            assert!(matches!(channel_from_sni(bad), Some(Err(_))), "{bad}");
        }
    }

    #[test]
    fn first_segments_of_every_kind() {
        for segment in [Segment::Tsh, Segment::Tshc, Segment::Tshm] {
            for ebcdic in [false, true] {
                let bytes = encode_initial(segment, ebcdic, "APP1.SVRCONN", "QM1");
                let found = initial_data(&bytes).unwrap();
                assert_eq!(found.channel, "APP1.SVRCONN");
                assert_eq!(found.queue_manager.as_deref(), Some("QM1"));
                assert_eq!((found.segment, found.ebcdic), (segment, ebcdic));
            }
        }
        // The documented offsets: TSH channel at 52, TSHM at 60.
        assert_eq!(&encode_initial(Segment::Tsh, false, "C", "Q")[52..53], b"C");
        assert_eq!(
            &encode_initial(Segment::Tshm, false, "C", "Q")[60..61],
            b"C"
        );
        assert_eq!(&encode_initial(Segment::Tsh, false, "C", "Q")[76..77], b"Q");
    }

    #[test]
    fn what_is_not_a_first_flow() {
        assert_eq!(initial_data(b"\x16\x03\x01"), Err(Error::NotMq));
        assert_eq!(initial_data(b"GET /"), Err(Error::NotMq));
        let mut heartbeat = encode_initial(Segment::Tsh, false, "C", "Q");
        heartbeat[9] = 0x09;
        assert!(matches!(initial_data(&heartbeat), Err(Error::Invalid(_))));
        let mut huge = encode_initial(Segment::Tsh, false, "C", "Q");
        huge[4..8].copy_from_slice(&(1u32 << 20).to_be_bytes());
        assert!(matches!(initial_data(&huge), Err(Error::Invalid(_))));
        let mut bad_name = encode_initial(Segment::Tsh, false, "C", "Q");
        bad_name[53] = b'!';
        assert!(matches!(initial_data(&bad_name), Err(Error::Invalid(_))));
        let blank = encode_initial(Segment::Tsh, false, "", "Q");
        assert!(matches!(initial_data(&blank), Err(Error::Invalid(_))));
    }

    fn channel() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._/%]{1,20}"
    }

    proptest! {
        #[test]
        fn every_channel_survives_its_sni(channel in channel()) {
            let sni = channel_to_sni(&channel);
            prop_assert_eq!(channel_from_sni(&sni), Some(Ok(channel.clone())));
            prop_assert!(sni.len() <= 60 + SNI_SUFFIX.len());
        }

        #[test]
        fn any_sni_decodes_to_one_that_encodes_back(label in "[a-z0-9-]{0,40}") {
            let sni = format!("{label}{SNI_SUFFIX}");
            if let Some(Ok(channel)) = channel_from_sni(&sni) {
                prop_assert_eq!(channel_to_sni(&channel), sni);
            }
        }

        #[test]
        fn segments_in_pieces(channel in channel(), qm in "[A-Z0-9.]{0,48}", ebcdic: bool, kind in 0..3usize) {
            let segment = [Segment::Tsh, Segment::Tshc, Segment::Tshm][kind];
            let bytes = encode_initial(segment, ebcdic, &channel, &qm);
            let found = initial_data(&bytes).unwrap();
            prop_assert_eq!(&found.channel, &channel);
            prop_assert_eq!(found.queue_manager.as_deref(), (!qm.is_empty()).then_some(qm.as_str()));
            let needed = 28 + if segment == Segment::Tshm { 8 } else { 0 } + 96;
            for cut in 0..needed {
                let is_incomplete = matches!(initial_data(&bytes[..cut]), Err(Error::Incomplete { .. }));
                prop_assert!(is_incomplete);
            }
        }

        #[test]
        fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = initial_data(&bytes);
        }

        #[test]
        fn mq_looking_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..200), which in 0..6usize) {
            let mut bytes = IDS[which].0.to_vec();
            bytes.extend(tail);
            let _ = initial_data(&bytes);
        }
    }
}
