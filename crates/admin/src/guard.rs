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

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The header a `POST` must carry (any value).
pub const CONTROL_HEADER: &str = "causeway-admin";

/// The control API's bearer token, read from its file at start.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl Token {
    /// The file's content without surrounding whitespace; an empty file is refused.
    pub fn read(path: &std::path::Path) -> Result<Token, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("admin.token_file {}: {e}", path.display()))?;
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
        let given = (headers.get(header::AUTHORIZATION))
            .and_then(|h| h.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        let mut differs = u8::from(given.len() != self.0.len());
        for (i, expected) in self.0.iter().enumerate() {
            differs |= expected ^ given.get(i).copied().unwrap_or(0);
        }
        differs == 0
    }
}

pub async fn guard(token: std::sync::Arc<Option<Token>>, request: Request, next: Next) -> Response {
    if let Some(token) = token.as_ref()
        && !token.admits(request.headers())
    {
        tracing::warn!(method = %request.method(), path = %request.uri().path(), "admin request refused: no valid bearer token");
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
    match refusal(request.method(), request.headers(), check_host) {
        None => next.run(request).await,
        Some(why) => {
            tracing::warn!(method = %request.method(), path = %request.uri().path(), "admin request refused: {why}");
            (StatusCode::FORBIDDEN, format!("{why}\n")).into_response()
        }
    }
}

/// Why a request is refused, if it is.
fn refusal(method: &Method, headers: &HeaderMap, check_host: bool) -> Option<&'static str> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if check_host && host.is_some_and(|h| !literal_host(h)) {
        return Some("Host must be an IP address or localhost");
    }
    if headers.contains_key(header::ORIGIN) {
        return Some("requests from web pages (with Origin) are refused");
    }
    if method == Method::POST && !headers.contains_key(CONTROL_HEADER) {
        return Some("POST needs the Causeway-Admin header");
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
