//! One error type for everything that ends a connection early, saying which side failed.

use std::fmt;
use std::io;

/// Who caused a connection to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client, or the network towards it.
    Downstream,
    /// The server we dialed, or the network towards it.
    Upstream,
    /// The gateway itself: policy, limits, timeouts, shutdown.
    Internal,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        }
    }
}

/// What went wrong; `code()` is a stable snake_case label for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// No route of the listener matched the connection.
    NoRoute,
    /// The listener's connection limit was reached.
    ConnectionLimit,
    /// Every connect attempt failed; the last failure is kept.
    ConnectFailed {
        attempts: u32,
        last: String,
    },
    /// The peer reset the connection.
    Reset,
    /// Another read or write error.
    Io(io::ErrorKind),
    IdleTimeout,
    MaxDuration,
    /// The gateway is shutting down and the drain window ended.
    Shutdown,
    /// A preferred endpoint came back and the cluster's failback policy is `close`.
    Failback,
    /// An operator closed it through the admin API.
    ClosedByOperator,
    /// The client did not send what is inspected (e.g. its TLS ClientHello) in time.
    InspectionTimeout,
    /// What the client sent is not what the protocol says it should be.
    Malformed(&'static str),
    /// A TLS handshake failed, for this reason (`identity_refused`, `unknown_ca`...).
    Tls(&'static str),
    /// A PROXY header from (or required of) a source that is not a trusted balancer.
    ProxyUntrusted,
    /// Authorization refused the connection (a built-in rule or the external service).
    Denied,
    /// The authorization service could not answer and its failure mode is deny.
    AuthzUnavailable,
    /// A periodic re-check refused a live connection.
    ReauthorizationDenied,
    /// The authorizer chose an upstream this route may not use.
    BadDynamicTarget,
    /// The CONNECT proxy answered with this status instead of opening the tunnel.
    TunnelRefused(u16),
    /// The tunnel's HTTP connection failed.
    Tunnel(String),
    /// The CONNECT proxy did not answer in time.
    TunnelTimeout,
    /// The SSH client did not authenticate (wrong credentials, unknown user, no route,
    /// too many attempts, too slow).
    SshAuthFailed,
    /// The upstream SSH session could not be set up (`host_key_mismatch`, `auth_refused`...;
    /// the details are logged where it happens: an `Error` stays small).
    SshUpstream(&'static str),
    /// The SSH protocol itself failed on this side.
    Ssh(String),
    /// The SSH session a channel belonged to ended under it.
    SshSessionEnded,
    /// The PROXY v2 header for the upstream would not fit its 64 KiB (too many TLVs).
    ProxyHeaderTooLarge,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub side: Side,
    pub kind: Kind,
}

impl Error {
    pub fn new(side: Side, kind: Kind) -> Self {
        Error { side, kind }
    }

    pub fn internal(kind: Kind) -> Self {
        Error::new(Side::Internal, kind)
    }

    /// A read or write error on one side of the relay.
    pub fn io(side: Side, error: &io::Error) -> Self {
        let kind = match error.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Kind::Reset,
            other => Kind::Io(other),
        };
        Error::new(side, kind)
    }

    /// The reason label: `upstream_connect_failed`, `downstream_reset`, `idle_timeout`, ...
    pub fn code(&self) -> String {
        let kind = match &self.kind {
            Kind::NoRoute => "no_route",
            Kind::ConnectionLimit => "connection_limit",
            Kind::ConnectFailed { .. } => "connect_failed",
            Kind::Reset => "reset",
            Kind::Io(_) => "io_error",
            Kind::IdleTimeout => "idle_timeout",
            Kind::MaxDuration => "max_duration",
            Kind::Shutdown => "shutdown",
            Kind::Failback => "failback",
            Kind::ClosedByOperator => "closed_by_operator",
            Kind::InspectionTimeout => "inspection_timeout",
            Kind::Malformed(_) => "malformed",
            Kind::Tls(reason) => return format!("{}_tls_{reason}", self.side.as_str()),
            Kind::ProxyUntrusted => "proxy_protocol_untrusted",
            Kind::Denied => "authz_denied",
            Kind::AuthzUnavailable => "authz_unavailable",
            Kind::ReauthorizationDenied => "reauthorization_denied",
            Kind::BadDynamicTarget => "dynamic_target_not_allowed",
            Kind::TunnelRefused(status) => {
                return format!("{}_tunnel_status_{status}", self.side.as_str());
            }
            Kind::Tunnel(_) => "tunnel_error",
            Kind::TunnelTimeout => "tunnel_timeout",
            Kind::SshAuthFailed => "ssh_auth_failed",
            Kind::SshUpstream(code) => return format!("upstream_ssh_{code}"),
            Kind::Ssh(_) => "ssh_error",
            Kind::SshSessionEnded => "ssh_session_ended",
            Kind::ProxyHeaderTooLarge => "proxy_header_too_large",
        };
        match self.side {
            Side::Internal => kind.to_string(),
            side => format!("{}_{kind}", side.as_str()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.side.as_str())?;
        match &self.kind {
            Kind::NoRoute => write!(f, "no route matches the connection"),
            Kind::ConnectionLimit => write!(f, "the listener's connection limit is reached"),
            Kind::ConnectFailed { attempts, last } => {
                write!(f, "connect failed after {attempts} attempt(s): {last}")
            }
            Kind::Reset => write!(f, "connection reset by peer"),
            Kind::Io(kind) => write!(f, "i/o error: {kind}"),
            Kind::IdleTimeout => write!(f, "idle timeout"),
            Kind::MaxDuration => write!(f, "maximum connection duration reached"),
            Kind::Shutdown => write!(f, "gateway shut down before the connection ended"),
            Kind::Failback => write!(f, "closed so the client reconnects to a recovered endpoint"),
            Kind::ClosedByOperator => write!(f, "closed by an operator (admin API)"),
            Kind::InspectionTimeout => write!(f, "did not send its first bytes in time"),
            Kind::Malformed(why) => write!(f, "malformed: {why}"),
            Kind::Tls(reason) => write!(f, "TLS handshake failed: {}", reason.replace('_', " ")),
            Kind::ProxyUntrusted => write!(f, "PROXY header from a source that is not trusted"),
            Kind::Denied => write!(f, "not authorized"),
            Kind::AuthzUnavailable => write!(f, "the authorization service did not answer"),
            Kind::ReauthorizationDenied => write!(f, "authorization withdrawn"),
            Kind::BadDynamicTarget => write!(
                f,
                "the authorizer chose an upstream this route does not allow"
            ),
            Kind::TunnelRefused(status) => write!(f, "the tunnel proxy answered {status}"),
            Kind::Tunnel(why) => write!(f, "tunnel: {why}"),
            Kind::TunnelTimeout => write!(f, "the tunnel proxy did not answer in time"),
            Kind::SshAuthFailed => write!(f, "SSH authentication failed"),
            Kind::SshUpstream(code) => write!(f, "SSH session: {}", code.replace('_', " ")),
            Kind::Ssh(why) => write!(f, "SSH: {why}"),
            Kind::SshSessionEnded => write!(f, "the SSH session of the channel ended"),
            Kind::ProxyHeaderTooLarge => write!(f, "the PROXY v2 header would be over 64 KiB"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors are held across awaits in every connection's task: a new kind must not make
    /// them (and so every idle connection) bigger.
    #[test]
    fn an_error_stays_small() {
        assert!(
            std::mem::size_of::<Error>() <= 40,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn codes_name_the_side() {
        let e = Error::io(
            Side::Upstream,
            &io::Error::from(io::ErrorKind::ConnectionReset),
        );
        assert_eq!(e.code(), "upstream_reset");
        assert_eq!(e.to_string(), "upstream: connection reset by peer");
        assert_eq!(Error::internal(Kind::IdleTimeout).code(), "idle_timeout");
    }
}
