//! What the gateway tells about itself: the admin API, the access log and statsd metrics.

use super::names::is_host_port;
use crate::problems::Problems;
use crate::{model, raw};
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_ADMIN_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);

/// On by default, on loopback. Off loopback the control API needs a bearer token; the
/// read-only probe listener may bind anywhere.
pub(super) fn admin(problems: &mut Problems, raw: Option<raw::Admin>) -> Option<model::Admin> {
    let Some(raw) = raw else {
        return Some(model::Admin {
            address: model::AdminAddress::Tcp(DEFAULT_ADMIN_ADDRESS),
            token_file: None,
            probes: None,
        });
    };
    if raw.enabled == Some(false) {
        let settings = [("probes", &raw.probes), ("token_file", &raw.token_file)];
        for (name, setting) in settings {
            if let Some(setting) = setting {
                let why = format!(
                    "admin.{name} is set but admin.enabled is false: nothing would listen (kubelet probes would fail)"
                );
                problems.add(setting.referenced, why);
            }
        }
        return None;
    }
    if let Some(old) = &raw.allow_non_loopback {
        problems.add(
            old.referenced,
            "admin.allow_non_loopback is gone: a control API off loopback needs admin.token_file (and probes and metrics belong on admin.probes)",
        );
    }
    let token_file = raw.token_file.map(|t| std::path::PathBuf::from(t.value));
    let address = match &raw.address {
        None => model::AdminAddress::Tcp(DEFAULT_ADMIN_ADDRESS),
        Some(a) => admin_address(problems, a, token_file.is_some()),
    };
    let probes = raw.probes.as_ref().map(|p| {
        p.value.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.add(
                p.referenced,
                format!("admin.probes `{}` must be IP:PORT", p.value),
            );
            DEFAULT_ADMIN_ADDRESS
        })
    });
    Some(model::Admin {
        address,
        token_file,
        probes,
    })
}

/// `IP:PORT` (loopback, or anywhere with a token) or `unix:/path`.
fn admin_address(
    problems: &mut Problems,
    raw: &serde_saphyr::Spanned<String>,
    has_token: bool,
) -> model::AdminAddress {
    if let Some(path) = raw.value.strip_prefix("unix:") {
        if !path.starts_with('/') {
            problems.add(
                raw.referenced,
                format!(
                    "admin address `{}`: a unix socket needs an absolute path",
                    raw.value
                ),
            );
        }
        return model::AdminAddress::Unix(path.into());
    }
    match raw.value.parse::<SocketAddr>() {
        Ok(address) => {
            if !address.ip().is_loopback() && !has_token {
                problems.add(
                    raw.referenced,
                    format!(
                        "the admin API on {address} would be reachable from the network: bind it to 127.0.0.1, [::1] or a unix: socket, or set admin.token_file (and put probes and metrics on admin.probes)"
                    ),
                );
            }
            model::AdminAddress::Tcp(address)
        }
        Err(_) => {
            problems.add(
                raw.referenced,
                format!(
                    "admin address `{}` must be IP:PORT or unix:/path",
                    raw.value
                ),
            );
            model::AdminAddress::Tcp(DEFAULT_ADMIN_ADDRESS)
        }
    }
}

/// Access-log lines a slow disk may keep waiting (about 30 MiB): beyond, lines are dropped
/// and counted, never a connection held up.
pub const DEFAULT_QUEUED_LINES: usize = 65_536;

pub(super) fn access_log(
    problems: &mut Problems,
    raw: Option<raw::AccessLog>,
) -> Option<model::AccessLog> {
    raw.map(|a| model::AccessLog {
        path: a.path.filter(|p| p != "stdout").map(Into::into),
        open_connections_interval: a
            .open_connections_interval
            .map(|i| problems.positive(&i, "access_log.open_connections_interval")),
        max_queued_lines: a.max_queued_lines.map_or(DEFAULT_QUEUED_LINES, |m| {
            problems.at_least(&m, 1, "access_log.max_queued_lines")
        }),
        otlp: a.otlp.unwrap_or(false),
    })
}

pub(super) fn metrics(problems: &mut Problems, raw: raw::Metrics) -> model::Metrics {
    model::Metrics {
        statsd: raw.statsd.map(|s| statsd(problems, s)),
    }
}

fn statsd(problems: &mut Problems, s: raw::Statsd) -> model::Statsd {
    if !is_host_port(&s.address.value) {
        problems.add(
            s.address.referenced,
            format!("statsd address `{}` must be HOST:PORT", s.address.value),
        );
    }
    model::Statsd {
        address: s.address.value,
        prefix: s.prefix.unwrap_or_else(|| "causeway".into()),
        flush_interval: s.flush_interval.map_or(Duration::from_secs(1), |f| {
            problems.positive(&f, "metrics.statsd.flush_interval")
        }),
        mode: match s.mode {
            None | Some(raw::StatsdMode::Dogstatsd) => model::StatsdMode::Dogstatsd,
            Some(raw::StatsdMode::Plain) => model::StatsdMode::Plain,
        },
    }
}
