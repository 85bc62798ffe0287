//! Structure-aware: a valid first message (FIX Logon, MQ initial segment, TLS ClientHello,
//! PROXY v1 or v2 header) built from the input, delivered in the input's chunks as the
//! inspect stage sees a stream arrive. Every prefix either asks for more bytes or already
//! gives the answer the whole message gets (the MQ parser reads the channel before the
//! segment's end) — never a refusal or another answer; once the whole message is in, the
//! answer is the one the unchunked message gets.
#![no_main]

use causeway_protocols::{fix, mq, proxy, tls};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};

#[derive(Arbitrary, Debug)]
enum Message {
    Fix {
        sender: String,
        target: String,
        heartbeat: u16,
        more: Vec<(u16, String)>,
    },
    Mq {
        segment: u8,
        ebcdic: bool,
        channel: String,
        queue_manager: String,
    },
    ClientHello {
        sni: Option<String>,
        alpn: Vec<String>,
        padding: u16,
        record_size: u16,
    },
    ProxyV1 {
        source: (IpAddr, u16),
        destination: (IpAddr, u16),
    },
    ProxyV2 {
        source: (IpAddr, u16),
        destination: (IpAddr, u16),
        tlvs: Vec<(u8, Vec<u8>)>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    message: Message,
    /// Chunk sizes, in turn (a zero reads as one byte).
    chunks: Vec<u8>,
    /// Bytes that arrive behind the message (the protocol's next bytes).
    after: Vec<u8>,
}

/// FIX values: printable, no `=` or SOH, at least one character.
fn fix_value(text: &str) -> String {
    let value: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '=')
        .take(32)
        .collect();
    if value.is_empty() { "X".into() } else { value }
}

/// An MQ name: what the parser accepts, 1 to 20 characters.
fn mq_name(text: &str, max: usize) -> String {
    let name: String = text
        .chars()
        .filter(|c| mq::name_char(*c))
        .take(max)
        .collect();
    if name.is_empty() { "A".into() } else { name }
}

/// A DNS-ish label list the ClientHello can carry.
fn host(text: &str) -> String {
    let name: String = (text.chars())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .take(60)
        .collect();
    let name = name.trim_matches('.').to_ascii_lowercase();
    if name.is_empty() || name.contains("..") {
        "a.example".into()
    } else {
        name
    }
}

fn build(message: &Message) -> Option<Vec<u8>> {
    Some(match message {
        Message::Fix {
            sender,
            target,
            heartbeat,
            more,
        } => {
            let mut fields = vec![
                (35, "A".to_string()),
                (49, fix_value(sender)),
                (56, fix_value(target)),
                (98, "0".to_string()),
                (108, heartbeat.max(&1).to_string()),
            ];
            // User-defined tags (5000-5999): no session field, which may appear only once.
            for (tag, value) in more.iter().take(8) {
                fields.push((5000 + u32::from(*tag) % 1000, fix_value(value)));
            }
            let fields: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
            fix::encode("FIX.4.4", &fields)
        }
        Message::Mq {
            segment,
            ebcdic,
            channel,
            queue_manager,
        } => {
            let segment =
                [mq::Segment::Tsh, mq::Segment::Tshc, mq::Segment::Tshm][usize::from(*segment % 3)];
            mq::encode_initial(
                segment,
                *ebcdic,
                &mq_name(channel, mq::MAX_CHANNEL),
                &mq_name(queue_manager, 48),
            )
        }
        Message::ClientHello {
            sni,
            alpn,
            padding,
            record_size,
        } => {
            let sni = sni.as_deref().map(host);
            let alpn: Vec<String> = (alpn.iter().take(4))
                .map(|p| {
                    p.chars()
                        .filter(char::is_ascii_graphic)
                        .take(16)
                        .collect::<String>()
                })
                .filter(|p| !p.is_empty())
                .collect();
            let alpn: Vec<&str> = alpn.iter().map(String::as_str).collect();
            // Within the parser's bound on records per ClientHello.
            let padding = usize::from(*padding % 8192);
            let fewest = (padding + 1024) / tls::MAX_CLIENT_HELLO_RECORDS + 1;
            let record_size = usize::from(*record_size).clamp(fewest.max(64), 16384);
            tls::build_client_hello(sni.as_deref(), &alpn, padding, record_size)
        }
        Message::ProxyV1 {
            source,
            destination,
        } => {
            let (source, destination) = (SocketAddr::from(*source), SocketAddr::from(*destination));
            if source.is_ipv4() != destination.is_ipv4() {
                return None;
            }
            proxy::encode_v1(source, destination)
        }
        Message::ProxyV2 {
            source,
            destination,
            tlvs,
        } => {
            let (source, destination) = (SocketAddr::from(*source), SocketAddr::from(*destination));
            let tlvs: Vec<(u8, &[u8])> = tlvs
                .iter()
                .take(4)
                .map(|(k, v)| (0xE0 | (k & 0x0F), v.as_slice()))
                .collect();
            proxy::encode_v2(source, destination, &tlvs).ok()?
        }
    })
}

/// What the inspect stage makes of the bytes so far.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// It asks for more bytes.
    More,
    /// It read the message (or decided without it): what it found.
    Read(String),
    /// It refused the bytes.
    Refused(String),
}

/// What the inspect stage reads from `bytes`.
fn read(message: &Message, bytes: &[u8]) -> Outcome {
    let outcome = |found: Result<String, String>| match found {
        Ok(found) => Outcome::Read(found),
        Err(why) => Outcome::Refused(why),
    };
    match message {
        Message::Fix { .. } => match fix::logon(bytes, 8192) {
            Err(fix::Error::Incomplete { .. }) => Outcome::More,
            found => outcome(
                found
                    .map(|logon| {
                        format!(
                            "{} {} {:?} {}",
                            logon.sender_comp_id,
                            logon.target_comp_id,
                            logon.heart_bt_int,
                            logon.length
                        )
                    })
                    .map_err(|e| e.to_string()),
            ),
        },
        Message::Mq { .. } => match mq::initial_data(bytes) {
            Err(mq::Error::Incomplete { .. }) => Outcome::More,
            found => outcome(
                found
                    .map(|f| format!("{f:?}"))
                    .map_err(|e| format!("{e:?}")),
            ),
        },
        Message::ClientHello { .. } => match tls::client_hello(bytes) {
            Err(tls::Error::Incomplete { .. }) => Outcome::More,
            found => outcome(
                found
                    .map(|f| format!("{f:?}"))
                    .map_err(|e| format!("{e:?}")),
            ),
        },
        Message::ProxyV1 { .. } | Message::ProxyV2 { .. } => match proxy::parse(bytes) {
            Err(proxy::Error::Incomplete) => Outcome::More,
            found => outcome(
                found
                    .map(|f| format!("{f:?}"))
                    .map_err(|e| format!("{e:?}")),
            ),
        },
    }
}

fuzz_target!(|input: Input| {
    let Some(message) = build(&input.message) else {
        return;
    };
    let whole = read(&input.message, &message);
    match &whole {
        Outcome::Read(_) => {}
        Outcome::More => panic!("a whole message needs no more bytes: {:?}", input.message),
        // (A refusal is the parser's verdict, not a prefix of its text: a FIX
        // SenderCompID may well start with "Err".)
        Outcome::Refused(why) => panic!("our own message is refused: {why}"),
    }
    let mut stream = message.clone();
    stream.extend_from_slice(&input.after);
    let mut sizes = input.chunks.iter().cycle();
    let mut arrived = 0;
    while arrived < message.len() {
        let size = sizes.next().map_or(1, |s| usize::from(*s).max(1));
        arrived = (arrived + size).min(stream.len());
        let outcome = read(&input.message, &stream[..arrived]);
        if arrived < message.len() && outcome == Outcome::More {
            continue;
        }
        assert_eq!(
            outcome,
            whole,
            "{arrived} of {} bytes read otherwise than the whole",
            message.len()
        );
    }
});
