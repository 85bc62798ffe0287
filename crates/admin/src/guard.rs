//! What a request must look like to reach the admin API, whoever can open its port: the
//! defences against a browser on an operator's desk being used against it.
//!
//! - DNS rebinding: a page on `evil.example` that re-resolves its name to 127.0.0.1 sends
//!   `Host: evil.example`. Only a literal IP address or `localhost` is accepted.
//! - Cross-site requests: browsers add `Origin` to them; no tool an operator runs does.
//! - `POST` changes the gateway: it needs the `Causeway-Admin` header, which no form and no
//!   simple cross-site request can carry.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The header a `POST` must carry (any value).
pub const CONTROL_HEADER: &str = "causeway-admin";

pub async fn guard(request: Request, next: Next) -> Response {
    match refusal(request.method(), request.headers()) {
        None => next.run(request).await,
        Some(why) => {
            tracing::warn!(method = %request.method(), path = %request.uri().path(), "admin request refused: {why}");
            (StatusCode::FORBIDDEN, format!("{why}\n")).into_response()
        }
    }
}

/// Why a request is refused, if it is.
fn refusal(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if host.is_some_and(|h| !literal_host(h)) {
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
