//! Everything known about one connection, in one typed value. Routing (and later
//! authorization, logs and tunnels) read it; inspection stages add to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use telemetry::trace::{Span, SpanContext, SpanKind};

#[derive(Debug, Clone)]
pub struct Attributes {
    /// Connection id, unique within the process, for logs.
    pub id: u64,
    pub listener: Arc<str>,
    /// The client's address (later: as told by a PROXY header from a trusted balancer).
    pub source: SocketAddr,
    /// The address the client connected to.
    pub destination: SocketAddr,
    /// What the TLS inspector found, on listeners that inspect TLS.
    pub tls: Tls,
    /// The TLS session the gateway terminated, with the client's verified identity.
    /// (Boxed: most connections have none.)
    pub session: Option<Box<TlsSession>>,
    /// The PROXY header of a trusted load balancer (whose source became `source`).
    pub proxy: Option<Box<ProxyInfo>>,
    /// How authorization decided (`rule_allow`, `ext_authz_allow`...); `None`: not checked.
    pub authz: Option<Decision>,
    /// What the listener's protocol said (FIX Logon, MQ channel). (Boxed: most connections
    /// have none.)
    pub protocol: Option<Box<Protocol>>,
    /// The connection's span, when tracing is on.
    pub span: SpanSlot,
}

/// A connection's span, set at accept, ended by the one ending. Copies of the attributes
/// share it (a login attempt's, a refused connection's log line); a connection made from
/// another (a tunnel, an SSH channel) gets a slot of its own. Empty when tracing is off.
#[derive(Debug, Default, Clone)]
pub struct SpanSlot(Option<Arc<std::sync::Mutex<Option<Span>>>>);

impl SpanSlot {
    pub fn new(span: Span) -> SpanSlot {
        SpanSlot(Some(Arc::new(std::sync::Mutex::new(Some(span)))))
    }

    /// The span, for its end; whoever shares the slot sees it ended.
    pub fn take(&self) -> Option<Span> {
        self.0
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// A phase of the connection: a span within its span (`None` when not traced).
    pub fn child(&self, name: &'static str, kind: SpanKind) -> Option<Span> {
        let slot = self.0.as_ref()?.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(|s| s.child(name, kind))
    }

    /// Records on the connection's span, if it is recorded.
    pub fn with(&self, record: impl FnOnce(&mut Span)) {
        let Some(slot) = &self.0 else { return };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(span) = slot.as_mut().filter(|s| s.is_recording()) {
            record(span);
        }
    }

    pub fn context(&self) -> Option<SpanContext> {
        let slot = self.0.as_ref()?.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(|s| s.context().clone())
    }
}

/// How authorization decided, for the access log, metrics and spans. One byte on every
/// connection's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    RuleAllow,
    RuleDeny,
    DefaultAllow,
    DefaultDeny,
    ExtAuthzAllow,
    ExtAuthzDeny,
    /// The authorizer did not answer and its failure mode let the connection in.
    ExtAuthzFailedAllow,
    ExtAuthzFailedDeny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::RuleAllow => "rule_allow",
            Decision::RuleDeny => "rule_deny",
            Decision::DefaultAllow => "default_allow",
            Decision::DefaultDeny => "default_deny",
            Decision::ExtAuthzAllow => "ext_authz_allow",
            Decision::ExtAuthzDeny => "ext_authz_deny",
            Decision::ExtAuthzFailedAllow => "ext_authz_failed_allow",
            Decision::ExtAuthzFailedDeny => "ext_authz_failed_deny",
        }
    }
}

/// What a protocol-aware listener read before routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// The session fields of the FIX Logon.
    Fix(protocols::fix::Logon),
    /// The MQ channel: from the first segment (with the queue manager) or from the SNI.
    Mq(Mq),
    /// The SSH login, once the client authenticated (or while it tries).
    Ssh(SshLogin),
    /// The target a CONNECT tunnel asked for.
    Tunnel(TunnelTarget),
}

/// Where a tunnel's client asked to go: the authority of its CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelTarget {
    pub host: String,
    pub port: u16,
}

/// Who logged in over SSH, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshLogin {
    /// The user, without the target of a `user@target` login name.
    pub user: String,
    pub target: Option<String>,
    /// `publickey`, `password`, `keyboard-interactive`.
    pub method: &'static str,
    /// `SHA256:…` of the client's key (publickey).
    pub key_fingerprint: Option<String>,
    /// Set on a channel of the session: a connection of its own.
    pub channel: Option<SshChannel>,
}

/// One channel of an SSH session (the `sftp` subsystem, an exec, a shell, a forwarded
/// port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshChannel {
    /// `sftp`, `subsystem`, `exec`, `shell`, `port_forwarding`.
    pub kind: &'static str,
    /// The connection id of the session it belongs to.
    pub session: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mq {
    pub channel: String,
    pub queue_manager: Option<String>,
}

/// What a load balancer's PROXY header said, besides the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyInfo {
    /// The balancer itself: the TCP peer of the connection.
    pub balancer: SocketAddr,
    pub version: u8,
    /// v2 TLVs: (type, value).
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

/// A TLS session terminated by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSession {
    pub sni: Option<String>,
    /// The protocol negotiated by ALPN.
    pub alpn: Option<String>,
    /// `TLSv1_3`, `TLSv1_2`.
    pub version: String,
    /// `TLS13_AES_256_GCM_SHA384`...
    pub cipher: String,
    /// From the client certificate, verified against the route's trust bundle.
    pub peer: Option<tls::PeerIdentity>,
    /// The client certificate as PEM, kept only for an authorizer that asks for it.
    pub peer_certificate_pem: Option<String>,
}

impl Attributes {
    pub fn fix(&self) -> Option<&protocols::fix::Logon> {
        match self.protocol.as_deref() {
            Some(Protocol::Fix(logon)) => Some(logon),
            _ => None,
        }
    }

    pub fn ssh(&self) -> Option<&SshLogin> {
        match self.protocol.as_deref() {
            Some(Protocol::Ssh(login)) => Some(login),
            _ => None,
        }
    }

    pub fn tunnel(&self) -> Option<&TunnelTarget> {
        match self.protocol.as_deref() {
            Some(Protocol::Tunnel(target)) => Some(target),
            _ => None,
        }
    }

    pub fn mq(&self) -> Option<&Mq> {
        match self.protocol.as_deref() {
            Some(Protocol::Mq(mq)) => Some(mq),
            _ => None,
        }
    }

    /// The server name the client asked for: from the terminated session, else the
    /// inspected ClientHello.
    pub fn sni(&self) -> Option<&str> {
        self.session
            .as_ref()
            .and_then(|s| s.sni.as_deref())
            .or_else(|| self.tls.hello().and_then(|h| h.sni.as_deref()))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Tls {
    /// The listener does not inspect TLS.
    #[default]
    NotInspected,
    /// The client's first bytes are not a TLS handshake.
    NotTls,
    /// A ClientHello: server name and ALPN, read without terminating TLS. (Boxed: every
    /// connection carries its attributes, most of them without a ClientHello.)
    Hello(Box<protocols::tls::ClientHello>),
}

impl Tls {
    pub fn hello(&self) -> Option<&protocols::tls::ClientHello> {
        match self {
            Tls::Hello(hello) => Some(hello),
            _ => None,
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A new connection id.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Relaxed)
}

/// A fresh connection's attributes: what is known at accept.
/// Boxed: an `async fn` keeps its arguments for its whole life, so a connection's task
/// would carry a second copy of them all along.
pub(crate) fn accepted(
    listener: &Arc<str>,
    source: SocketAddr,
    destination: SocketAddr,
) -> Box<Attributes> {
    Box::new(Attributes {
        id: next_id(),
        listener: listener.clone(),
        source,
        destination,
        tls: Tls::NotInspected,
        session: None,
        proxy: None,
        authz: None,
        protocol: None,
        span: SpanSlot::default(),
    })
}
