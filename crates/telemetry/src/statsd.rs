//! statsd over UDP: what changed at each publish, as lines packed into datagrams that fit a
//! common MTU. Two dialects: DogStatsD tags (`name:1|c|#listener:front`), or plain statsd
//! with the label values folded into dotted names the way Envoy's statsd sink names its
//! stats (`causeway.listener.front.connections_accepted_total:1|c`). Either way the family's
//! own `causeway_` is not repeated after the prefix.

use std::fmt::Write;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What fits in one datagram on a 1500-byte Ethernet path over IPv6 without fragments.
const DATAGRAM: usize = 1432;

pub(crate) struct Statsd {
    socket: UdpSocket,
    prefix: String,
    mode: config::StatsdMode,
    /// Datagrams the socket refused (statsd gone: the ICMP port unreachable of an earlier
    /// one comes back as ECONNREFUSED; or the send buffer full).
    pub(crate) send_errors: AtomicU64,
}

pub(crate) enum Value {
    /// Growth since the last publish.
    Count(u64),
    Gauge(f64),
}

impl Statsd {
    /// Resolves the address once (host names too) and binds a socket of its family.
    pub fn new(config: &config::Statsd) -> Result<Statsd, String> {
        let fail = |e: &dyn std::fmt::Display| format!("statsd `{}`: {e}", config.address);
        let target: SocketAddr = (config.address.to_socket_addrs())
            .map_err(|e| fail(&e))?
            .next()
            .ok_or_else(|| fail(&"no address"))?;
        let any: SocketAddr = match target {
            SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
            SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
        };
        let socket = UdpSocket::bind(any).map_err(|e| fail(&e))?;
        socket.connect(target).map_err(|e| fail(&e))?;
        socket.set_nonblocking(true).map_err(|e| fail(&e))?;
        Ok(Statsd {
            socket,
            prefix: config.prefix.clone(),
            mode: config.mode,
            send_errors: AtomicU64::new(0),
        })
    }

    /// One line for `name{labels}`.
    pub fn line(&self, lines: &mut Vec<String>, name: &str, labels: &[(&str, &str)], value: Value) {
        let mut line = String::with_capacity(64);
        let stem = name.strip_prefix("causeway_").unwrap_or(name);
        if !self.prefix.is_empty() {
            line.push_str(&self.prefix);
            line.push('.');
        }
        match self.mode {
            config::StatsdMode::Dogstatsd => line.push_str(&clean(stem)),
            config::StatsdMode::Plain => fold(&mut line, stem, labels),
        }
        let _ = match value {
            Value::Count(n) => write!(line, ":{n}|c"),
            Value::Gauge(v) => write!(line, ":{v}|g"),
        };
        if self.mode == config::StatsdMode::Dogstatsd && !labels.is_empty() {
            line.push_str("|#");
            let tags: Vec<String> = (labels.iter())
                .map(|(k, v)| format!("{}:{}", clean(k), tag_value(v)))
                .collect();
            line.push_str(&tags.join(","));
        }
        lines.push(line);
    }

    /// Sends `lines`, as few datagrams as fit; a statsd that is down loses them, nothing
    /// else (UDP, never blocking).
    pub fn send(&self, lines: &[String]) {
        let mut datagram = String::with_capacity(DATAGRAM);
        for line in lines {
            if !datagram.is_empty() && datagram.len() + 1 + line.len() > DATAGRAM {
                self.send_one(&datagram);
                datagram.clear();
            }
            if !datagram.is_empty() {
                datagram.push('\n');
            }
            datagram.push_str(line);
        }
        if !datagram.is_empty() {
            self.send_one(&datagram);
        }
    }

    fn send_one(&self, datagram: &str) {
        if self.socket.send(datagram.as_bytes()).is_err() {
            self.send_errors.fetch_add(1, Relaxed);
        }
    }
}

/// `listener_connections_accepted_total` with `listener=front` →
/// `listener.front.connections_accepted_total`: the label values after the family's first
/// word, in the order reported.
fn fold(line: &mut String, stem: &str, labels: &[(&str, &str)]) {
    let (head, rest) = stem.split_once('_').unwrap_or((stem, ""));
    line.push_str(&clean(head));
    for (_, value) in labels {
        line.push('.');
        line.push_str(&clean(value));
    }
    if !rest.is_empty() {
        line.push('.');
        line.push_str(&clean(rest));
    }
}

/// A name part without what statsd gives a meaning (`.`, `:`, `|`, `@`, `#`, `,`) or
/// whitespace.
fn clean(part: &str) -> String {
    part.chars()
        .map(|c| match c {
            '.' | ':' | '|' | '@' | '#' | ',' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// A DogStatsD tag value: `:` is allowed inside it (`endpoint:10.0.0.1:443`), not `|`, `,`
/// or `#`.
fn tag_value(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '|' | ',' | '#' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(mode: config::StatsdMode) -> Statsd {
        Statsd::new(&config::Statsd {
            address: "127.0.0.1:9".into(),
            prefix: "causeway".into(),
            flush_interval: std::time::Duration::from_secs(1),
            mode,
        })
        .unwrap()
    }

    #[test]
    fn dogstatsd_tags_and_plain_dotted_names_without_a_stutter() {
        let labels = [("cluster", "c.1"), ("endpoint", "10.0.0.1:443")];
        let mut lines = Vec::new();
        let name = "causeway_endpoint_connections_total";
        sink(config::StatsdMode::Dogstatsd).line(&mut lines, name, &labels, Value::Count(3));
        sink(config::StatsdMode::Plain).line(&mut lines, name, &labels, Value::Gauge(1.5));
        sink(config::StatsdMode::Plain).line(
            &mut lines,
            "process_open_fds",
            &[],
            Value::Gauge(7.0),
        );
        assert_eq!(
            lines,
            [
                "causeway.endpoint_connections_total:3|c|#cluster:c.1,endpoint:10.0.0.1:443",
                "causeway.endpoint.c_1.10_0_0_1_443.connections_total:1.5|g",
                "causeway.process.open_fds:7|g",
            ]
        );
    }
}
