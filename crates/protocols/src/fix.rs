//! FIX tag=value framing (FIX.4.0–4.4, FIXT.1.1): one message at a time, validated the way
//! an engine would — BeginString first, BodyLength second and exact, CheckSum last and right
//! — and bounded in size. The Logon's session fields for routing; a Logout to refuse one.

use std::fmt;

pub const SOH: u8 = 0x01;

/// Session fields that appear once in a message. Engines differ in which copy of a repeated
/// one they read (the first, the last): a message that repeats one is refused, so the
/// gateway never authorizes one CompID while the venue sees another.
pub const SINGLE_TAGS: [u32; 9] = [34, 35, 49, 50, 52, 56, 57, 553, 554];

/// The BeginStrings a session may open with.
pub const BEGIN_STRINGS: [&str; 6] = [
    "FIX.4.0", "FIX.4.1", "FIX.4.2", "FIX.4.3", "FIX.4.4", "FIXT.1.1",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A valid start so far; at least this many more bytes are needed.
    Incomplete { needed: usize },
    /// Not a FIX message (or not the one expected); the reason, for logs.
    Invalid(&'static str),
    /// Larger than allowed.
    TooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Incomplete { needed } => write!(f, "{needed} more bytes needed"),
            Error::Invalid(why) => write!(f, "invalid FIX message: {why}"),
            Error::TooLarge => write!(f, "FIX message larger than allowed"),
        }
    }
}

/// One framed message: its length and its fields, in order, as byte ranges of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// Bytes of the whole message, `8=` to the SOH after `10=nnn`.
    pub length: usize,
    pub fields: Vec<(u32, &'a [u8])>,
}

impl<'a> Message<'a> {
    /// The first value of `tag`.
    pub fn get(&self, tag: u32) -> Option<&'a [u8]> {
        self.fields.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }

    pub fn text(&self, tag: u32) -> Option<&'a str> {
        self.get(tag).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn msg_type(&self) -> Option<&'a str> {
        self.text(35)
    }
}

/// The first field at `bytes`: its tag, value and the length through its SOH.
fn field(bytes: &[u8], max: usize) -> Result<(u32, &[u8], usize), Error> {
    let Some(eq) = bytes.iter().take(10).position(|&b| b == b'=') else {
        return match bytes.len() >= 10 || bytes.iter().any(|b| !b.is_ascii_digit()) {
            true => Err(Error::Invalid("a field without a tag")),
            false => Err(Error::Incomplete { needed: 1 }),
        };
    };
    let tag = std::str::from_utf8(&bytes[..eq])
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && !t.starts_with('0'))
        .and_then(|t| t.parse::<u32>().ok())
        .ok_or(Error::Invalid("a tag that is not a number"))?;
    match bytes[eq + 1..].iter().position(|&b| b == SOH) {
        Some(end) => Ok((tag, &bytes[eq + 1..eq + 1 + end], eq + 2 + end)),
        None if bytes.len() >= max => Err(Error::TooLarge),
        None => Err(Error::Incomplete { needed: 1 }),
    }
}

/// Frames the message at the start of `bytes`, at most `max` bytes long.
pub fn frame(bytes: &[u8], max: usize) -> Result<Message<'_>, Error> {
    // 8=BeginString
    let prefix = b"8=";
    let n = bytes.len().min(2);
    if bytes[..n] != prefix[..n] {
        return Err(Error::Invalid("does not start with 8=BeginString"));
    }
    let (tag, begin, mut at) = field(bytes, max)?;
    debug_assert_eq!(tag, 8);
    if !BEGIN_STRINGS.iter().any(|b| b.as_bytes() == begin) {
        return Err(Error::Invalid("unknown BeginString"));
    }
    // 9=BodyLength
    let (tag, value, len) = field(&bytes[at..], max)?;
    if tag != 9 {
        return Err(Error::Invalid("BodyLength is not the second field"));
    }
    let body_length: usize = std::str::from_utf8(value)
        .ok()
        .filter(|v| !v.is_empty() && v.len() <= 7 && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .ok_or(Error::Invalid("BodyLength is not a number"))?;
    at += len;
    let body_end = at + body_length;
    // 10=nnn<SOH>: seven bytes.
    let total = body_end + 7;
    if total > max {
        return Err(Error::TooLarge);
    }
    if bytes.len() < total {
        return Err(Error::Incomplete {
            needed: total - bytes.len(),
        });
    }
    let mut fields = vec![(8, begin), (9, value)];
    let mut body = at;
    while body < body_end {
        let (tag, value, len) = match field(&bytes[body..body_end], max) {
            Ok(f) => f,
            // The body ended inside a field: BodyLength is wrong.
            Err(_) => return Err(Error::Invalid("BodyLength does not end at a field")),
        };
        if (8..=10).contains(&tag) {
            return Err(Error::Invalid(
                "BeginString, BodyLength or CheckSum inside the body",
            ));
        }
        if SINGLE_TAGS.contains(&tag) && fields.iter().any(|(t, _)| *t == tag) {
            return Err(Error::Invalid("a session field appears twice"));
        }
        fields.push((tag, value));
        body += len;
    }
    if fields.get(2).map(|(t, _)| *t) != Some(35) {
        return Err(Error::Invalid("MsgType is not the third field"));
    }
    let trailer = &bytes[body_end..total];
    if &trailer[..3] != b"10=" || trailer[6] != SOH {
        return Err(Error::Invalid(
            "BodyLength does not end before the CheckSum",
        ));
    }
    let digits = &trailer[3..6];
    let stated: u32 = std::str::from_utf8(digits)
        .ok()
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
        .ok_or(Error::Invalid("CheckSum is not three digits"))?;
    if stated != u32::from(checksum(&bytes[..body_end])) {
        return Err(Error::Invalid("wrong CheckSum"));
    }
    fields.push((10, digits));
    Ok(Message {
        length: total,
        fields,
    })
}

/// The sum of the bytes, modulo 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

/// A message with `begin_string` and `fields` (MsgType first), BodyLength and CheckSum
/// computed.
pub fn encode(begin_string: &str, fields: &[(u32, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (tag, value) in fields {
        body.extend_from_slice(format!("{tag}={value}").as_bytes());
        body.push(SOH);
    }
    let mut message = format!("8={begin_string}\x019={}\x01", body.len()).into_bytes();
    message.extend_from_slice(&body);
    let sum = checksum(&message);
    message.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
    message
}

/// The session fields of a Logon (35=A). The password is kept for the authorizer only:
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Logon {
    pub begin_string: String,
    pub sender_comp_id: String,
    pub target_comp_id: String,
    pub sender_sub_id: Option<String>,
    pub target_sub_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub heart_bt_int: Option<u32>,
    /// Bytes of the Logon message.
    pub length: usize,
}

impl fmt::Debug for Logon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logon")
            .field("begin_string", &self.begin_string)
            .field("sender_comp_id", &self.sender_comp_id)
            .field("target_comp_id", &self.target_comp_id)
            .field("sender_sub_id", &self.sender_sub_id)
            .field("target_sub_id", &self.target_sub_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The Logon at the start of `bytes`: framed, validated, its session fields read.
pub fn logon(bytes: &[u8], max: usize) -> Result<Logon, Error> {
    let message = frame(bytes, max)?;
    if message.msg_type() != Some("A") {
        return Err(Error::Invalid("the first message is not a Logon (35=A)"));
    }
    let text = |tag| message.text(tag).map(str::to_string);
    let required = |tag, why| {
        text(tag)
            .filter(|v| !v.is_empty())
            .ok_or(Error::Invalid(why))
    };
    Ok(Logon {
        begin_string: text(8).ok_or(Error::Invalid("BeginString is not text"))?,
        sender_comp_id: required(49, "no SenderCompID (49)")?,
        target_comp_id: required(56, "no TargetCompID (56)")?,
        sender_sub_id: text(50),
        target_sub_id: text(57),
        username: text(553),
        password: text(554),
        heart_bt_int: message.text(108).and_then(|v| v.parse().ok()),
        length: message.length,
    })
}

/// The Logout (35=5) that refuses `logon`, as its acceptor would send it: CompIDs and
/// sub-IDs swapped, MsgSeqNum 1 (no session was established), `text` in Text (58).
pub fn logout(logon: &Logon, text: &str, sending_time: &str) -> Vec<u8> {
    let mut fields = vec![
        (35, "5"),
        (49, logon.target_comp_id.as_str()),
        (56, logon.sender_comp_id.as_str()),
        (34, "1"),
    ];
    if let Some(sub) = &logon.target_sub_id {
        fields.push((50, sub));
    }
    if let Some(sub) = &logon.sender_sub_id {
        fields.push((57, sub));
    }
    fields.push((52, sending_time));
    // Text is free text, but an SOH inside would end the field early.
    let text = text.replace('\x01', " ");
    fields.push((58, &text));
    encode(&logon.begin_string, &fields)
}

/// SendingTime (52) for a message sent at `time` (pure: the caller reads the clock).
pub fn sending_time_at(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    sending_time(since.as_secs(), since.subsec_millis())
}

/// UTC as FIX's SendingTime (`YYYYMMDD-HH:MM:SS.sss`) from seconds and milliseconds since
/// the Unix epoch.
pub fn sending_time(unix_seconds: u64, millis: u32) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}:{:02}:{:02}.{millis:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 4096;

    fn logon_bytes() -> Vec<u8> {
        encode(
            "FIX.4.4",
            &[
                (35, "A"),
                (49, "CLIENT1"),
                (56, "VENUE1"),
                (34, "1"),
                (52, "20261128-12:00:00.000"),
                (98, "0"),
                (108, "30"),
                (553, "alice"),
                (554, "secret"),
            ],
        )
    }

    #[test]
    fn a_known_message_checks_out() {
        // The classic example: checksum of a Heartbeat computed by hand.
        let m = b"8=FIX.4.2\x019=5\x0135=0\x0110=161\x01";
        let framed = frame(m, MAX).unwrap();
        assert_eq!(framed.length, m.len());
        assert_eq!(framed.msg_type(), Some("0"));
        assert_eq!(encode("FIX.4.2", &[(35, "0")]), m);
    }

    #[test]
    fn logon_fields_and_a_redacted_password() {
        let bytes = logon_bytes();
        let logon = logon(&bytes, MAX).unwrap();
        assert_eq!(logon.sender_comp_id, "CLIENT1");
        assert_eq!(logon.target_comp_id, "VENUE1");
        assert_eq!(logon.username.as_deref(), Some("alice"));
        assert_eq!(logon.password.as_deref(), Some("secret"));
        assert_eq!(logon.heart_bt_int, Some(30));
        assert_eq!(logon.length, bytes.len());
        assert!(!format!("{logon:?}").contains("secret"));
    }

    #[test]
    fn what_is_refused() {
        let good = logon_bytes();
        let mut wrong_sum = good.clone();
        let n = wrong_sum.len();
        wrong_sum[n - 2] = if wrong_sum[n - 2] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            frame(&wrong_sum, MAX),
            Err(Error::Invalid("wrong CheckSum"))
        );
        let long = String::from_utf8(good.clone())
            .unwrap()
            .replacen("9=", "9=1", 1);
        assert!(frame(long.as_bytes(), MAX).is_err());
        assert_eq!(frame(&good, 40), Err(Error::TooLarge));
        assert!(matches!(
            frame(b"GET / HTTP/1.1\r\n", MAX),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            frame(b"8=FIX.9.9\x01", MAX),
            Err(Error::Invalid(_))
        ));
        let heartbeat = encode("FIX.4.4", &[(35, "0"), (49, "A"), (56, "B")]);
        assert!(matches!(logon(&heartbeat, MAX), Err(Error::Invalid(_))));
        let anonymous = encode("FIX.4.4", &[(35, "A"), (56, "B")]);
        assert_eq!(
            logon(&anonymous, MAX),
            Err(Error::Invalid("no SenderCompID (49)"))
        );
        // BodyLength that ends inside a field.
        let mut short = encode("FIX.4.4", &[(35, "A"), (49, "A"), (56, "B")]);
        let text = String::from_utf8(short.clone()).unwrap();
        let body: usize = text.split('\x01').nth(1).unwrap()[2..].parse().unwrap();
        let fixed = text.replacen(&format!("9={body}"), &format!("9={}", body - 2), 1);
        short = fixed.into_bytes();
        assert!(matches!(frame(&short, MAX), Err(Error::Invalid(_))));
    }

    /// `49=CLIENT1 … 49=MALLORY`: the gateway would read the first, a venue may keep the
    /// last. Every session field that appears twice is refused; repeating groups are not.
    #[test]
    fn a_repeated_session_field_is_refused() {
        for tag in SINGLE_TAGS {
            let mut fields = vec![(35, "A"), (49, "CLIENT1"), (56, "VENUE")];
            fields.extend([(tag, "1"), (tag, "MALLORY")]);
            let twice = encode("FIX.4.4", &fields);
            assert_eq!(
                logon(&twice, MAX),
                Err(Error::Invalid("a session field appears twice")),
                "tag {tag}"
            );
        }
        // A repeating group (NoMsgTypes) repeats its own fields, legitimately.
        let fields = [
            (35, "A"),
            (49, "C"),
            (56, "V"),
            (384, "2"),
            (372, "D"),
            (372, "8"),
        ];
        assert!(logon(&encode("FIX.4.4", &fields), MAX).is_ok());
    }

    #[test]
    fn the_logout_refusing_a_logon() {
        let logon = logon(&logon_bytes(), MAX).unwrap();
        let out = logout(&logon, "not authorized", "20261128-12:00:00.000");
        let m = frame(&out, MAX).unwrap();
        assert_eq!(m.msg_type(), Some("5"));
        assert_eq!(m.text(49), Some("VENUE1"));
        assert_eq!(m.text(56), Some("CLIENT1"));
        assert_eq!(m.text(34), Some("1"));
        assert_eq!(m.text(58), Some("not authorized"));
        assert_eq!(m.text(8), Some("FIX.4.4"));
    }

    #[test]
    fn sending_time_is_utc() {
        assert_eq!(sending_time(0, 0), "19700101-00:00:00.000");
        assert_eq!(sending_time(1_795_867_200, 7), "20261128-12:00:00.007");
        assert_eq!(sending_time(951_782_400, 0), "20000229-00:00:00.000");
    }

    fn value() -> impl Strategy<Value = String> {
        "[ -~]{1,20}"
    }

    proptest! {
        #[test]
        fn encoded_messages_frame_back(
            begin in prop::sample::select(BEGIN_STRINGS.to_vec()),
            fields in prop::collection::vec((11u32..2000, value()), 0..20),
        ) {
            let mut all = vec![(35u32, "A".to_string()), (49, "S".into()), (56, "T".into())];
            all.extend(fields.into_iter().filter(|(t, _)| ![35, 49, 56].contains(t)));
            let refs: Vec<(u32, &str)> = all.iter().map(|(t, v)| (*t, v.as_str())).collect();
            let bytes = encode(begin, &refs);
            let m = frame(&bytes, 1 << 20).unwrap();
            prop_assert_eq!(m.length, bytes.len());
            for (tag, v) in &refs {
                prop_assert!(m.fields.iter().any(|(t, got)| t == tag && *got == v.as_bytes()));
            }
            // Every cut short of the end asks for more, never claims a message.
            for cut in 0..bytes.len() {
                let incomplete = matches!(frame(&bytes[..cut], 1 << 20), Err(Error::Incomplete { .. }));
                prop_assert!(incomplete, "cut at {}", cut);
            }
            // Followed by anything, the message is still exactly itself.
            let mut more = bytes.clone();
            more.extend_from_slice(b"8=FIX.4.4\x01garbage");
            prop_assert_eq!(frame(&more, 1 << 20).unwrap().length, bytes.len());
        }

        #[test]
        fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(m) = frame(&bytes, 256) {
                prop_assert!(m.length <= bytes.len() && m.length <= 256);
            }
        }

        #[test]
        fn a_flipped_byte_is_noticed(index in 0usize..1000, flip in 1u8..=255) {
            let mut bytes = logon_bytes();
            let i = index % bytes.len();
            bytes[i] ^= flip;
            let accepted_whole = frame(&bytes, MAX).map(|m| m.length) == Ok(bytes.len());
            prop_assert!(!accepted_whole);
        }
    }
}
