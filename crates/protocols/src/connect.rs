//! The target of an HTTP CONNECT request (RFC 9110 §9.3.6): the authority form `host:port`,
//! nothing more. Pure; the CONNECT terminator checks every request with it before anything
//! else is looked at.

use std::fmt;

/// Where a tunnel asks to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// A name or an IP address, as written (an IPv6 address in its brackets).
    pub host: &'a str,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `user@host:port`: credentials in the target (never forwarded, never believed).
    Userinfo,
    /// No `:port`, or one that is not 1–65535 in decimal.
    Port,
    /// An empty host, a character no host name or address has, or an unclosed `[`.
    Host,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Userinfo => "the target carries user information",
            Error::Port => "the target has no valid port",
            Error::Host => "the target has no valid host",
        })
    }
}

impl std::error::Error for Error {}

/// The longest target accepted: a DNS name (253) with brackets, a colon and five digits.
pub const MAX_LEN: usize = 263;

/// Parses `authority` as a CONNECT target: `name:port`, `1.2.3.4:port` or `[v6]:port`.
pub fn target(authority: &str) -> Result<Target<'_>, Error> {
    if authority.contains('@') {
        return Err(Error::Userinfo);
    }
    if authority.len() > MAX_LEN {
        return Err(Error::Host);
    }
    let (host, port) = authority.rsplit_once(':').ok_or(Error::Port)?;
    let port = parse_port(port)?;
    let host = match host.strip_prefix('[') {
        Some(bracketed) => {
            let inner = bracketed.strip_suffix(']').ok_or(Error::Host)?;
            inner
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| Error::Host)?;
            host
        }
        None if host.is_empty() || !host.bytes().all(host_byte) => return Err(Error::Host),
        None => host,
    };
    Ok(Target { host, port })
}

/// 1–65535, decimal digits only (no sign, no leading `+`, at most five digits).
fn parse_port(text: &str) -> Result<u16, Error> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Port);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(Error::Port),
        Ok(port) => Ok(port),
    }
}

/// What a host name or an IPv4 address is made of: letters, digits, `-`, `.`, and `_`
/// (service names such as `_sftp._tcp.example` carry it).
fn host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_addresses_and_their_ports() {
        let t = |host, port| Ok(Target { host, port });
        assert_eq!(target("db.example.com:5432"), t("db.example.com", 5432));
        assert_eq!(target("10.0.0.1:1414"), t("10.0.0.1", 1414));
        assert_eq!(target("[2001:db8::1]:443"), t("[2001:db8::1]", 443));
        assert_eq!(target("_sftp.example:22"), t("_sftp.example", 22));
    }

    #[test]
    fn userinfo_ports_and_hosts_that_are_wrong() {
        assert_eq!(target("user@db:5432"), Err(Error::Userinfo));
        assert_eq!(target("user:pw@db:5432"), Err(Error::Userinfo));
        for port in [
            "db",
            "db:",
            "db:0",
            "db:65536",
            "db:+80",
            "db:080000",
            "db: 80",
        ] {
            assert_eq!(target(port), Err(Error::Port), "{port}");
        }
        for host in [":80", "[::1:80", "[db]:80", "d b:80", "db/x:80", "::1:80"] {
            assert_eq!(target(host), Err(Error::Host), "{host}");
        }
        let long = format!("{}:80", "a".repeat(MAX_LEN));
        assert_eq!(target(&long), Err(Error::Host));
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panic(text in ".{0,300}") {
            if let Ok(t) = target(&text) {
                prop_assert!(t.port > 0 && !t.host.is_empty());
                prop_assert!(!text.contains('@'));
            }
        }

        #[test]
        fn a_target_written_out_parses_back(
            host in "[a-z0-9][a-z0-9.-]{0,60}",
            v6 in any::<[u16; 8]>(),
            v4 in any::<[u8; 4]>(),
            port in 1u16..,
            which in 0..3u8,
        ) {
            let host = match which {
                0 => host,
                1 => format!("[{}]", std::net::Ipv6Addr::from(v6)),
                _ => std::net::Ipv4Addr::from(v4).to_string(),
            };
            let written = format!("{host}:{port}");
            prop_assert_eq!(target(&written), Ok(Target { host: &host, port }));
        }
    }
}
