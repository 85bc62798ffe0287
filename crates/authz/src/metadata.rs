//! What an authorizer's answer may say about where the connection goes: the
//! `dynamic_metadata` Struct's field `causeway`, holding `cluster` (string), `address`
//! (`host:port`), `headers` (string map, for tunnels) and `tlvs` (map of TLV type → string
//! value, for PROXY v2 to the upstream).

use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub cluster: Option<String>,
    pub address: Option<String>,
    pub headers: Vec<(String, String)>,
    pub tlvs: Vec<(u8, Vec<u8>)>,
    /// The user an SSH session logs in as upstream.
    pub ssh_user: Option<String>,
}

impl Routing {
    /// Reads `causeway` from the response's metadata; `Err` says what is malformed.
    pub fn from_metadata(metadata: Option<&Struct>) -> Result<Option<Routing>, String> {
        let Some(Kind::StructValue(ours)) = metadata
            .and_then(|m| m.fields.get("causeway"))
            .and_then(|v| v.kind.as_ref())
        else {
            return Ok(None);
        };
        let text = |key: &str| -> Result<Option<String>, String> {
            match ours.fields.get(key).and_then(|v| v.kind.as_ref()) {
                None | Some(Kind::NullValue(_)) => Ok(None),
                Some(Kind::StringValue(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("causeway.{key} must be a string")),
            }
        };
        let map = |key: &str| -> Result<Vec<(String, String)>, String> {
            match ours.fields.get(key).and_then(|v| v.kind.as_ref()) {
                None | Some(Kind::NullValue(_)) => Ok(Vec::new()),
                Some(Kind::StructValue(s)) => {
                    let mut pairs: Vec<_> = s
                        .fields
                        .iter()
                        .map(|(k, v)| match &v.kind {
                            Some(Kind::StringValue(s)) => Ok((k.clone(), s.clone())),
                            _ => Err(format!("causeway.{key}.{k} must be a string")),
                        })
                        .collect::<Result<_, _>>()?;
                    pairs.sort();
                    Ok(pairs)
                }
                Some(_) => Err(format!("causeway.{key} must be a map")),
            }
        };
        let tlvs = map("tlvs")?
            .into_iter()
            .map(|(k, v)| {
                let kind = match k.strip_prefix("0x").or_else(|| k.strip_prefix("0X")) {
                    Some(hex) => u8::from_str_radix(hex, 16).ok(),
                    None => k.parse::<u8>().ok(),
                };
                kind.map(|t| (t, v.into_bytes())).ok_or_else(|| {
                    format!("causeway.tlvs: `{k}` is not a TLV type (0-255 or 0xNN)")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Routing {
            cluster: text("cluster")?,
            address: text("address")?,
            headers: map("headers")?,
            tlvs,
            ssh_user: text("ssh_user")?,
        }))
    }
}

/// A string value (for building requests and test servers).
pub fn string(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// A Struct value of `fields`.
pub fn structure(fields: impl IntoIterator<Item = (String, Value)>) -> Value {
    Value {
        kind: Some(Kind::StructValue(Struct {
            fields: fields.into_iter().collect(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key_and_refuses_wrong_types() {
        let ours = structure([
            ("cluster".into(), string("alt")),
            ("address".into(), string("127.0.0.1:10003")),
            (
                "headers".into(),
                structure([("x-client".into(), string("c1"))]),
            ),
            (
                "tlvs".into(),
                structure([("0xE0".into(), string("a")), ("2".into(), string("b"))]),
            ),
        ]);
        let metadata = Struct {
            fields: [("causeway".to_string(), ours)].into_iter().collect(),
        };
        let routing = Routing::from_metadata(Some(&metadata)).unwrap().unwrap();
        assert_eq!(routing.cluster.as_deref(), Some("alt"));
        assert_eq!(routing.address.as_deref(), Some("127.0.0.1:10003"));
        assert_eq!(routing.headers, vec![("x-client".into(), "c1".into())]);
        assert!(routing.tlvs.contains(&(0xE0, b"a".to_vec())));
        assert!(routing.tlvs.contains(&(2, b"b".to_vec())));

        assert_eq!(Routing::from_metadata(None), Ok(None));
        let bad = Struct {
            fields: [(
                "causeway".to_string(),
                structure([("cluster".into(), structure([]))]),
            )]
            .into_iter()
            .collect(),
        };
        assert!(Routing::from_metadata(Some(&bad)).is_err());
    }
}
