//! Histograms kept in atomics by the stage that observes (fixed buckets: no allocation and
//! no lock per observation), published as real Prometheus histograms (`_bucket` series,
//! `_sum`, `_count` under one `# TYPE … histogram`) and, to statsd, as those same series.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Bucket bounds in seconds for latencies: connect, TLS handshake, authorization, tunnel
/// open.
pub const LATENCY: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds in seconds for how long connections live: up to a month (FIX and MQ
/// sessions last days).
pub const LIFETIME: &[f64] = &[
    0.1,
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    14_400.0,
    43_200.0,
    86_400.0,
    259_200.0,
    604_800.0,
    2_592_000.0,
];

#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at most `bounds[i]` (not cumulative); the last one: above every bound.
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < seconds);
        self.buckets[i].fetch_add(1, Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// Cumulative counts by upper bound (the last: `+Inf`), the sum in seconds.
    pub fn snapshot(&self) -> Snapshot {
        let mut total = 0;
        let cumulative = (self.buckets.iter())
            .map(|n| {
                total += n.load(Relaxed);
                total
            })
            .collect();
        Snapshot {
            bounds: self.bounds,
            cumulative,
            sum: self.sum_micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub bounds: &'static [f64],
    /// One more than `bounds`: the last is the count of every observation.
    pub cumulative: Vec<u64>,
    pub sum: f64,
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The `le` label of bucket `i`.
    pub fn le(&self, i: usize) -> String {
        match self.bounds.get(i) {
            Some(bound) => bound.to_string(),
            None => "+Inf".into(),
        }
    }
}

/// One histogram series as reported at a publish.
pub(crate) struct Series {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub snapshot: Snapshot,
}

/// The Prometheus text of `series` (grouped by family, each with its HELP and TYPE).
pub(crate) fn render(series: &[Series], help: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut previous = "";
    for s in series {
        if s.name != previous {
            if let Some(text) = help(s.name) {
                let _ = writeln!(out, "# HELP {} {}", s.name, escape_help(&text));
            }
            let _ = writeln!(out, "# TYPE {} histogram", s.name);
            previous = s.name;
        }
        let labels = |le: Option<&str>| {
            let mut pairs: Vec<String> = (s.labels.iter())
                .map(|(k, v)| format!("{k}=\"{}\"", escape_value(v)))
                .collect();
            pairs.extend(le.map(|le| format!("le=\"{le}\"")));
            match pairs.is_empty() {
                true => String::new(),
                false => format!("{{{}}}", pairs.join(",")),
            }
        };
        for (i, n) in s.snapshot.cumulative.iter().enumerate() {
            let le = s.snapshot.le(i);
            let _ = writeln!(out, "{}_bucket{} {n}", s.name, labels(Some(&le)));
        }
        let _ = writeln!(out, "{}_sum{} {}", s.name, labels(None), s.snapshot.sum);
        let _ = writeln!(
            out,
            "{}_count{} {}",
            s.name,
            labels(None),
            s.snapshot.count()
        );
    }
    out
}

/// A counter whose total is not a whole number, without labels.
pub(crate) struct Fractional {
    pub name: &'static str,
    pub total: f64,
}

pub(crate) fn render_fractional(
    counters: &[Fractional],
    help: impl Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::new();
    for c in counters {
        if let Some(text) = help(c.name) {
            let _ = writeln!(out, "# HELP {} {}", c.name, escape_help(&text));
        }
        let _ = writeln!(out, "# TYPE {} counter\n{} {}", c.name, c.name, c.total);
    }
    out
}

fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_add_up() {
        let h = Histogram::new(&[0.01, 1.0]);
        for ms in [5, 10, 500, 2000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, [2, 3, 4], "le is inclusive");
        assert!((s.sum - 2.515).abs() < 1e-9);
        let text = render(
            &[Series {
                name: "x_seconds",
                labels: vec![("l", "a\"b".into())],
                snapshot: s,
            }],
            |_| Some("what x is".into()),
        );
        assert!(text.starts_with("# HELP x_seconds what x is\n# TYPE x_seconds histogram\n"));
        assert!(
            text.contains("x_seconds_bucket{l=\"a\\\"b\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_count{l=\"a\\\"b\"} 4\n"), "{text}");
    }
}
