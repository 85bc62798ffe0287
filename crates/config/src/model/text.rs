//! Durations serialized as text, the way they are written in the configuration.

use serde::Serializer;
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
