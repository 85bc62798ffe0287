//! Values that several sections share: TCP socket options (listeners and clusters), port
//! ranges (CONNECT terminators and dynamic targets), and templates (tunnels).

use crate::problems::Problems;
use crate::{model, raw};
use serde_saphyr::Spanned;
use std::time::Duration;

pub const DEFAULT_KEEPALIVE: model::Keepalive = model::Keepalive {
    time: Duration::from_secs(60),
    interval: Duration::from_secs(15),
    retries: 4,
};

pub(super) fn socket_options(
    problems: &mut Problems,
    nodelay: Option<bool>,
    keepalive: Option<raw::Keepalive>,
) -> model::SocketOptions {
    let keepalive = match keepalive {
        None => Some(DEFAULT_KEEPALIVE),
        Some(k) if k.enabled == Some(false) => None,
        Some(k) => Some(model::Keepalive {
            time: k.time.map_or(DEFAULT_KEEPALIVE.time, |t| {
                problems.positive(&t, "tcp_keepalive.time")
            }),
            interval: k.interval.map_or(DEFAULT_KEEPALIVE.interval, |t| {
                problems.positive(&t, "tcp_keepalive.interval")
            }),
            retries: k.retries.map_or(DEFAULT_KEEPALIVE.retries, |r| {
                problems.at_least(&r, 1, "tcp_keepalive.retries")
            }),
        }),
    };
    model::SocketOptions {
        nodelay: nodelay.unwrap_or(true),
        keepalive,
    }
}

pub(super) fn port_ranges(problems: &mut Problems, ports: &[Spanned<String>]) -> Vec<(u16, u16)> {
    ports
        .iter()
        .map(|p| {
            port_range(&p.value).unwrap_or_else(|| {
                problems.add(
                    p.referenced,
                    format!("port range `{}`: write 10001 or 10001-10004", p.value),
                );
                (0, 0)
            })
        })
        .collect()
}

fn port_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let (lo, hi) = (
        lo.trim().parse::<u16>().ok()?,
        hi.trim().parse::<u16>().ok()?,
    );
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

pub(super) fn template(problems: &mut Problems, text: &Spanned<String>) -> model::Template {
    let template = model::Template(text.value.clone());
    for name in template.unknown() {
        problems.add(
            text.referenced,
            format!(
                "`{{{name}}}` is not a known placeholder: use {}",
                model::Template::PLACEHOLDERS
                    .map(|p| format!("{{{p}}}"))
                    .join(", ")
            ),
        );
    }
    template
}
