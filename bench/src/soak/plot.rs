//! The samples as an SVG (no plotting library): resident memory and descriptors with the
//! fitted slope over the run, threads, active connections, and successes per second of each kind;
//! the warm-up's end is a dashed line, the authorizer's flaps are shaded.

use super::sample::{Sample, Stage};
use super::stats::Kind;
use super::verdict::Fit;
use std::fmt::Write;

const WIDTH: f64 = 1000.0;
const PANEL: f64 = 120.0;
const LEFT: f64 = 60.0;
const COLOURS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

struct Series<'a> {
    label: &'a str,
    colour: &'a str,
    points: Vec<(f64, f64)>,
}

struct Panel<'a> {
    title: &'a str,
    series: Vec<Series<'a>>,
    fit: Option<Fit>,
    /// The y axis: from zero (counts), or around the fitted samples' values (RSS and
    /// descriptors: a trend of a few MiB must be visible on 30; start and end, off the
    /// scale, are drawn at its edge).
    range: Option<(f64, f64)>,
}

pub fn svg(samples: &[Sample], rss: Fit, fds: Fit) -> String {
    let end = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let panels = panels(samples, rss, fds);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
"#,
        30.0 + panels.len() as f64 * (PANEL + 30.0)
    );
    for (i, p) in panels.iter().enumerate() {
        let top = 30.0 + i as f64 * (PANEL + 30.0);
        panel(&mut out, samples, top, end, p);
    }
    out.push_str("</svg>\n");
    out
}

fn panels(samples: &[Sample], rss: Fit, fds: Fit) -> Vec<Panel<'static>> {
    let series = |f: fn(&Sample) -> f64| samples.iter().map(|s| (s.t, f(s))).collect();
    let one = |label, points| {
        vec![Series {
            label,
            colour: COLOURS[0],
            points,
        }]
    };
    let rate = |i: usize| {
        let per_second =
            |w: &[Sample]| (w[1].ok[i] - w[0].ok[i]) as f64 / (w[1].t - w[0].t).max(0.1);
        samples
            .windows(2)
            .map(|w| (w[1].t, per_second(w)))
            .collect()
    };
    let rss_mib = Fit {
        slope_per_min: rss.slope_per_min / 1024.0,
        intercept: rss.intercept / 1024.0,
        ..rss
    };
    vec![
        Panel {
            title: "gateway RSS (MiB); fitted slope after warm-up (MiB/min)",
            series: one("RSS", series(|s| s.rss_kib as f64 / 1024.0)),
            fit: Some(rss_mib),
            range: run_range(samples, |s| s.rss_kib as f64 / 1024.0),
        },
        Panel {
            title: "gateway open file descriptors; fitted slope after warm-up (per min)",
            series: one("fds", series(|s| s.fds as f64)),
            fit: Some(fds),
            range: run_range(samples, |s| s.fds as f64),
        },
        Panel {
            title: "gateway threads",
            series: one("threads", series(|s| s.threads as f64)),
            fit: None,
            range: None,
        },
        Panel {
            title: "active connections (causeway_connections_active)",
            series: one("active", series(|s| s.active)),
            fit: None,
            range: None,
        },
        Panel {
            title: "successful connections per second, by kind",
            series: (Kind::ALL.iter().enumerate())
                .map(|(i, k)| Series {
                    label: k.name(),
                    colour: COLOURS[i],
                    points: rate(i),
                })
                .collect(),
            fit: None,
            range: None,
        },
    ]
}

fn panel(out: &mut String, samples: &[Sample], top: f64, end: f64, p: &Panel) {
    let values = p.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (low, high) = p
        .range
        .unwrap_or((0.0, values.fold(1.0f64, f64::max) * 1.1));
    let x = |t: f64| LEFT + (WIDTH - LEFT - 80.0) * t / end;
    let y = |v: f64| top + PANEL - PANEL * (v.clamp(low, high) - low) / (high - low);
    frame(out, samples, top, end, p.title, (low, high));
    for (i, s) in p.series.iter().enumerate() {
        let points: Vec<String> = (s.points.iter())
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.2" points="{}"/><text x="{}" y="{}" fill="{}">{}</text>"#,
            s.colour,
            points.join(" "),
            WIDTH - 75.0,
            top + 12.0 + 13.0 * i as f64,
            s.colour,
            s.label
        );
    }
    if let Some(f) = p.fit.filter(|f| f.to > f.from) {
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black" stroke-width="1.5"/><text x="{}" y="{}">{:+.2}/min</text>"#,
            x(f.from * 60.0),
            y(f.at(f.from)),
            x(f.to * 60.0),
            y(f.at(f.to)),
            WIDTH - 75.0,
            top + PANEL - 4.0,
            f.slope_per_min
        );
    }
}

/// The values of the samples after warm-up, with a margin (None: no such samples).
fn run_range(samples: &[Sample], f: fn(&Sample) -> f64) -> Option<(f64, f64)> {
    let values: Vec<f64> = (samples.iter().filter(|s| s.stage == Stage::Run))
        .map(f)
        .collect();
    let min = values.iter().copied().reduce(f64::min)?;
    let max = values.iter().copied().reduce(f64::max)?;
    let pad = ((max - min) * 0.5).max(max * 0.02).max(1.0);
    Some(((min - pad).max(0.0), max + pad))
}

/// Title, the authorizer's flaps shaded, axes with their range and times, the warm-up's end.
fn frame(out: &mut String, samples: &[Sample], top: f64, end: f64, title: &str, range: (f64, f64)) {
    let x = |t: f64| LEFT + (WIDTH - LEFT - 80.0) * t / end;
    let bottom = top + PANEL;
    let _ = writeln!(out, r#"<text x="{LEFT}" y="{}">{title}</text>"#, top - 6.0);
    for w in samples.windows(2).filter(|w| w[0].phase != "allow") {
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{PANEL}" fill="#f4cccc"/>"##,
            x(w[0].t),
            (x(w[1].t) - x(w[0].t)).max(0.5)
        );
    }
    let _ = writeln!(
        out,
        r#"<line x1="{LEFT}" y1="{bottom}" x2="{r}" y2="{bottom}" stroke="black"/><line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" stroke="black"/>"#,
        r = WIDTH - 80.0
    );
    let _ = writeln!(
        out,
        r#"<text x="4" y="{:.1}">{}</text><text x="4" y="{bottom}">{}</text>"#,
        top + 10.0,
        short(range.1),
        short(range.0)
    );
    for t in (0..=end as u64).step_by(tick(end)) {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}">{t}s</text>"#,
            x(t as f64) - 8.0,
            bottom + 12.0
        );
    }
    if let Some(warm) = samples.iter().find(|s| s.stage == Stage::Run) {
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{bottom}" stroke="#999" stroke-dasharray="3,3"/>"##,
            x(warm.t)
        );
    }
}

/// Seconds between time labels: about ten labels whatever the run's length.
fn tick(end: f64) -> usize {
    [10, 30, 60, 120, 300, 600, 1800]
        .into_iter()
        .find(|t| end / *t as f64 <= 12.0)
        .unwrap_or(3600)
}

fn short(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.0}"),
        v => format!("{v:.1}"),
    }
}
