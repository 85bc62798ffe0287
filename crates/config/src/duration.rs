use serde::de::{self, Deserialize, Deserializer};
use std::time::Duration;

/// A duration written as `500ms`, `5s`, `1h` or `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as 500ms, 5s or 1h")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(v)
                    .map(HumanDuration)
                    .map_err(|e| {
                        E::custom(format!(
                            "invalid duration `{v}` ({e}): write it like 500ms, 5s or 1h"
                        ))
                    })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write `{v}s` or `{v}ms`"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                self.visit_u64(v.unsigned_abs())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let d: HumanDuration = serde_saphyr::from_str("500ms").unwrap();
        assert_eq!(d.0, Duration::from_millis(500));
        let d: HumanDuration = serde_saphyr::from_str("1h 30m").unwrap();
        assert_eq!(d.0, Duration::from_secs(5400));
    }

    #[test]
    fn refuses_bare_numbers_and_garbage() {
        let e = serde_saphyr::from_str::<HumanDuration>("5").unwrap_err();
        assert!(e.to_string().contains("needs a unit"), "{e}");
        let e = serde_saphyr::from_str::<HumanDuration>("soon").unwrap_err();
        assert!(e.to_string().contains("invalid duration"), "{e}");
    }
}
