//! The samples as an SVG (no plotting library): resident memory and descriptors with the
//! fitted slope over the run, active connections, and successes per second of each kind;
//! the warm-up's end is a dashed line, the authorizer's flaps are shaded.

use super::sample::{Sample, Stage};
use super::stats::Kind;
use super::verdict::Fit;
use std::fmt::Write;

const WIDTH: f64 = 1000.0;
const PANEL: f64 = 170.0;
const LEFT: f64 = 60.0;
const COLOURS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

struct Series<'a> {
    label: &'a str,
    colour: &'a str,
    points: Vec<(f64, f64)>,
}

pub fn svg(samples: &[Sample], rss: Fit, fds: Fit) -> String {
    let end = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
"#,
        30.0 + 4.0 * (PANEL + 30.0)
    );
    let series = |f: fn(&Sample) -> f64| samples.iter().map(|s| (s.t, f(s))).collect::<Vec<_>>();
    let rate = |i: usize| -> Vec<(f64, f64)> {
        samples
            .windows(2)
            .map(|w| {
                (
                    w[1].t,
                    (w[1].ok[i] - w[0].ok[i]) as f64 / (w[1].t - w[0].t).max(0.1),
                )
            })
            .collect()
    };
    let panels: [(&str, Vec<Series>, Option<Fit>); 4] = [
        (
            "gateway RSS (MiB); fitted slope after warm-up",
            vec![Series {
                label: "RSS",
                colour: COLOURS[0],
                points: series(|s| s.rss_kib as f64 / 1024.0),
            }],
            Some(Fit {
                slope_per_min: rss.slope_per_min / 1024.0,
                intercept: rss.intercept / 1024.0,
                ..rss
            }),
        ),
        (
            "gateway open file descriptors; fitted slope after warm-up",
            vec![Series {
                label: "fds",
                colour: COLOURS[0],
                points: series(|s| s.fds as f64),
            }],
            Some(fds),
        ),
        (
            "active connections (causeway_connections_active) and threads",
            vec![
                Series {
                    label: "active",
                    colour: COLOURS[0],
                    points: series(|s| s.active),
                },
                Series {
                    label: "threads",
                    colour: COLOURS[1],
                    points: series(|s| s.threads as f64),
                },
            ],
            None,
        ),
        (
            "successful connections per second, by kind",
            Kind::ALL
                .iter()
                .enumerate()
                .map(|(i, k)| Series {
                    label: k.name(),
                    colour: COLOURS[i],
                    points: rate(i),
                })
                .collect(),
            None,
        ),
    ];
    for (i, (title, series, fit)) in panels.iter().enumerate() {
        let top = 30.0 + i as f64 * (PANEL + 30.0);
        panel(&mut out, samples, top, end, title, series, *fit);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(
    out: &mut String,
    samples: &[Sample],
    top: f64,
    end: f64,
    title: &str,
    series: &[Series],
    fit: Option<Fit>,
) {
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let high = values.fold(0.0f64, f64::max).max(1.0) * 1.1;
    let x = |t: f64| LEFT + (WIDTH - LEFT - 80.0) * t / end;
    let y = |v: f64| top + PANEL - PANEL * v / high;
    let _ = writeln!(out, r#"<text x="{LEFT}" y="{}">{title}</text>"#, top - 6.0);
    // The authorizer's flaps, shaded.
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
        r#"<line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{b}" stroke="black"/>"#,
        b = top + PANEL,
        r = WIDTH - 80.0
    );
    let _ = writeln!(
        out,
        r#"<text x="4" y="{:.1}">{}</text><text x="4" y="{:.1}">0</text>"#,
        top + 10.0,
        short(high),
        top + PANEL
    );
    for t in (0..=end as u64).step_by(tick(end)) {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}">{t}s</text>"#,
            x(t as f64) - 8.0,
            top + PANEL + 12.0
        );
    }
    if let Some(warm) = samples.iter().find(|s| s.stage == Stage::Run) {
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1}" stroke="#999" stroke-dasharray="3,3"/>"##,
            x(warm.t),
            top + PANEL
        );
    }
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
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
    if let Some(f) = fit.filter(|f| f.to > f.from) {
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
