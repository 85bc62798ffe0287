//! Durations serialized as text, the way they are written in the configuration; values
//! that may carry secrets (tunnel header values, PROXY TLV values) not serialized at all.

use serde::Serializer;
use serde::ser::SerializeSeq;
use std::time::Duration;

/// Durations read back the way they are written: `30s`, `1h 30m`.
pub(crate) fn as_text<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub(super) fn as_optional_text<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => as_text(d, s),
        None => s.serialize_none(),
    }
}

/// Name/type and value pairs shown with their names only: `GET /config` must not hand out a
/// bearer token written in a header or a TLV.
pub(super) fn names_only<S: Serializer, K: serde::Serialize, V>(
    pairs: &[(K, V)],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(pairs.len()))?;
    for (name, _) in pairs {
        seq.serialize_element(&(name, "<redacted>"))?;
    }
    seq.end()
}
