//! What a request must look like to reach the admin API, whoever can open its port: the
//! defences against a browser on an operator's desk being used against it.
//!
//! - DNS rebinding: a page on `evil.example` that re-resolves its name to 127.0.0.1 sends
//!   `Host: evil.example`. Only a literal IP address or `localhost` is accepted.
//! - Cross-site requests: browsers add `Origin` to them; no tool an operator runs does.
//! - `POST` changes the gateway: it needs the `Causeway-Admin` header, which no form and no
//!   simple cross-site request can carry.
//! - Off loopback: every request carries `Authorization: Bearer <token>`, the token read
//!   from `admin.token_file`.

use crate::listen::Peer;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The header a `POST` must carry (any value).
pub const CONTROL_HEADER: &str = "causeway-admin";

/// The control API's bearer token, read from its file at start.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl Token {
    /// The file's content without surrounding whitespace; a short token, or a file others
    /// may read, is refused.
    pub fn read(path: &std::path::Path) -> Result<Token, String> {
        use std::os::unix::fs::MetadataExt;
        let fail = |e: &dyn std::fmt::Display| format!("admin.token_file {}: {e}", path.display());
        let mode = std::fs::metadata(path).map_err(|e| fail(&e))?.mode();
        if mode & 0o007 != 0 {
            let why = format!(
                "others may read or write it (mode {:o}): chmod o-rwx (a Kubernetes Secret: defaultMode 0440)",
                mode & 0o777
            );
            return Err(fail(&why));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(&e))?;
        let token = text.trim();
        if token.len() < 16 {
            return Err(format!(
                "admin.token_file {}: the token must be at least 16 characters",
                path.display()
            ));
        }
        Ok(Token(token.as_bytes().to_vec()))
    }

    /// Whether `Authorization` carries this token, compared in constant time.
    fn admits(&self, headers: &HeaderMap) -> bool {
        // The scheme is case-insensitive (RFC 9110); the token is not.
        let given = (headers.get(header::AUTHORIZATION))
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or(&b""[..], |(_, token)| token.trim().as_bytes());
        let mut differs = u8::from(given.len() != self.0.len());
        for (i, expected) in self.0.iter().enumerate() {
            differs |= expected ^ given.get(i).copied().unwrap_or(0);
        }
        differs == 0
    }
}

pub async fn guard(token: std::sync::Arc<Option<Token>>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<Peer>().cloned();
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let peer = peer.map_or_else(|| "?".into(), |p| p.to_string());
    if let Some(token) = token.as_ref()
        && !token.admits(request.headers())
    {
        refused("token", &method, &path, &peer, "no valid bearer token");
        let challenge = [(header::WWW_AUTHENTICATE, "Bearer")];
        return (
            StatusCode::UNAUTHORIZED,
            challenge,
            "a bearer token is required\n",
        )
            .into_response();
    }
    // A page rebound to our address cannot know the token: with one, any Host will do.
    let check_host = token.is_none();
    if let Some((reason, why)) = refusal(request.method(), request.headers(), check_host) {
        refused(reason, &method, &path, &peer, why);
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    if method == Method::POST {
        // What changes the gateway is on record, with who asked.
        tracing::info!(%method, path, %peer, "admin control request");
    }
    next.run(request).await
}

/// Requests refused, by reason: `token`, `host`, `origin`, `control_header`.
static REFUSED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
const REASONS: [&str; 4] = ["token", "host", "origin", "control_header"];
/// The second of the last warning: a peer that keeps knocking gets one line a second.
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);

fn refused(reason: &str, method: &Method, path: &str, peer: &str, why: &str) {
    let index = REASONS.iter().position(|r| *r == reason).unwrap_or(0);
    REFUSED[index].fetch_add(1, Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LAST_WARNING.swap(now, Relaxed) != now {
        tracing::warn!(%method, path, peer, "admin request refused: {why} (further refusals this second are counted, not logged)");
    }
}

pub(crate) fn report(out: &mut telemetry::Out<'_>) {
    for (reason, count) in REASONS.iter().zip(&REFUSED) {
        let labels = vec![("reason", reason.to_string())];
        out.counter(
            "causeway_admin_requests_refused_total",
            labels,
            count.load(Relaxed),
        );
    }
}

/// Why a request is refused, if it is.
fn refusal(
    method: &Method,
    headers: &HeaderMap,
    check_host: bool,
) -> Option<(&'static str, &'static str)> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if check_host && host.is_some_and(|h| !literal_host(h)) {
        return Some(("host", "Host must be an IP address or localhost"));
    }
    if headers.contains_key(header::ORIGIN) {
        return Some((
            "origin",
            "requests from web pages (with Origin) are refused",
        ));
    }
    if method == Method::POST && !headers.contains_key(CONTROL_HEADER) {
        return Some(("control_header", "POST needs the Causeway-Admin header"));
    }
    None
}

/// `127.0.0.1`, `127.0.0.1:9901`, `[::1]:9901`, `localhost:9901`...
fn literal_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => {
            return rest
                .split_once(']')
                .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9901",
            "[::1]:9901",
            "[::1]",
            "localhost:1",
            "10.1.2.3:80",
        ] {
            assert!(literal_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9901",
            "127.0.0.1.nip.io",
            "[evil]:1",
            "",
        ] {
            assert!(!literal_host(bad), "{bad}");
        }
    }
}
